"""The capacity meter charges what DynamoDB's published rules say, on moto: item sizes, the KiB and 4 KiB units,
transactions at twice the price, index copies by what they project, eventually consistent index reads at half."""

from __future__ import annotations

import pytest

from tests.benchmarks.dynamodb_capacity import CapacityMeter, item_size, value_size


def test_item_sizes_follow_the_published_rules():
    assert value_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert value_size({"N": "12345"}) == 4 and value_size({"N": "-0.5"}) == 2  # a byte per two digits, plus one
    assert value_size({"BOOL": True}) == 1
    assert item_size({"PK": {"S": "a"}, "n": {"N": "7"}}) == (2 + 1) + (1 + 2)  # names count too


@pytest.fixture
def meter(aws):
    client = aws.client("dynamodb")
    keys = [{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "GA", "GB")]
    client.create_table(
        TableName="metered", BillingMode="PAY_PER_REQUEST", AttributeDefinitions=keys,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {"IndexName": "all", "KeySchema": [{"AttributeName": "GA", "KeyType": "HASH"},
                                               {"AttributeName": "SK", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "ALL"}},
            {"IndexName": "slim", "KeySchema": [{"AttributeName": "GB", "KeyType": "HASH"},
                                                {"AttributeName": "SK", "KeyType": "RANGE"}],
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["st"]}},
        ])
    meter = CapacityMeter(client, "metered")
    yield meter
    meter.detach()


def item(doc_bytes: int, st: str = "A", ga: str = "x") -> dict:
    return {"PK": {"S": "p"}, "SK": {"S": "s"}, "GA": {"S": ga}, "GB": {"S": "y"}, "st": {"S": st},
            "doc": {"S": "d" * doc_bytes}}


def test_writes_are_charged_per_kib_per_copy_and_twice_in_a_transaction(meter):
    client = meter.client
    with meter.phase("put") as put:
        client.put_item(TableName="metered", Item=item(1500))  # ~1.5 KiB: 2 units, the ALL copy 2, the slim copy 1
    assert (put.write_units, dict(put.writes_by)) == (5, {"p": 2, "index:all": 2, "index:slim": 1})
    with meter.phase("doc only") as doc_only:  # the slim index projects no doc: its copy is not written
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "metered", "Item": item(1600)}}])
    assert (doc_only.write_units, doc_only.writes_by["index:all"]) == (4 + 2, 2)
    with meter.phase("new index key") as moved:  # a changed index key is a delete and a put
        client.put_item(TableName="metered", Item=item(100, st="B", ga="z"))
    assert dict(moved.writes_by) == {"p": 2, "index:all": 2 + 1, "index:slim": 1}
    with meter.phase("refused") as refused, pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName="metered", Item=item(100), ConditionExpression="attribute_not_exists(PK)")
    assert (refused.write_units, refused.writes_by["index:all"]) == (1, 0)


def test_reads_are_charged_per_4_kib_and_half_when_eventually_consistent(meter):
    client = meter.client
    client.put_item(TableName="metered", Item=item(5000))
    with meter.phase("reads") as reads:
        client.get_item(TableName="metered", Key={"PK": {"S": "p"}, "SK": {"S": "s"}}, ConsistentRead=True)
        client.get_item(TableName="metered", Key={"PK": {"S": "none"}, "SK": {"S": "s"}})
        client.query(TableName="metered", IndexName="all", KeyConditionExpression="GA = :a",
                     ExpressionAttributeValues={":a": {"S": "x"}})
    assert dict(reads.reads_by) == {"GetItem": 2 + 0.5, "Query:all": 1}
