"""AWS names derived from a pool's name, each within the rule of the service that holds it.

A pool name may be up to 100 characters of letters (either case), digits, ``.``, ``_`` and ``-``; AWS is
stricter and different per service. Every name pushpool makes in AWS for a pool comes from :func:`pool_names`,
so the rules live in one place:

* IAM role and policy names: at most 64 of ``[A-Za-z0-9+=,.@_-]``;
* ECS cluster names: at most 255 of ``[A-Za-z0-9_-]`` (no ``.``); task definition families the same;
* ECR repository names: lowercase, ``[a-z0-9._/-]``, at most 256, each part starting with a letter or digit;
* security group names: at most 255 ASCII characters, not starting with ``sg-``;
* CloudWatch log group names: at most 512 of ``[.\\-_/#A-Za-z0-9]``.

A name that has to be shortened or changed keeps a short digest of the pool's name, so two pools never share
a name after the mapping.
"""

from __future__ import annotations

import re

from pushpool.pushers.naming import digest_of, fitted


def iam_name(pool: str, suffix: str) -> str:
    return fitted("pushpool-", pool, suffix, limit=64, allowed="A-Za-z0-9+=,.@_-")


def ecs_name(pool: str, prefix: str = "pushpool-", suffix: str = "", limit: int = 255) -> str:
    return fitted(prefix, pool, suffix, limit=limit, allowed="A-Za-z0-9_-")


def pool_names(pool: str) -> dict[str, str]:
    """Every AWS name of one pool's resources."""
    return {
        "execution_role": iam_name(pool, "-execution"), "task_role": iam_name(pool, "-task"),
        "identity": iam_name(pool, "-control-plane"), "policy": iam_name(pool, "-dispatch"),
        "cluster": ecs_name(pool), "family": task_family(pool),
        "log_group": fitted("/pushpool/", pool, "", limit=512, allowed=".\\-_/#A-Za-z0-9"),
        "repository": ecr_repository(pool),
        "security_group": fitted("pushpool-", pool, "", limit=255, allowed="A-Za-z0-9 ._\\-:/()#,@\\[\\]+=&;{}!$*"),
    }


def ecr_repository(pool: str) -> str:
    """``pushpool/<pool>`` in ECR's rule: lowercase, and ``.``, ``_``, ``-`` only one at a time between letters or
    digits (a pool named ``Data`` or ``a--b`` gets a digest, so it never meets ``data`` or ``a-b``)."""
    part = re.sub(r"[._-]{2,}", "-", pool.lower()).strip("._-") or "pool"
    if part == pool and len(part) <= 247:
        return "pushpool/" + part
    return f"pushpool/{part[:238].rstrip('._-')}-{digest_of(pool)}"


def task_family(pool: str, digest: str | None = None) -> str:
    """The task definition family of one pool's runs with one definition content (``digest``): one family per
    content, so a control plane that has never seen the definition finds it with one DescribeTaskDefinition of
    the family's latest revision. Without ``digest``: the prefix every such family of the pool shares."""
    base = ecs_name(pool, prefix="pushpool_", limit=255 - 13)
    return f"{base}_{digest[:12]}" if digest else base
