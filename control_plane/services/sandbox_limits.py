"""Memory bounds for the template sandbox: what a string operation would produce, checked before it runs.

A time limit cannot interrupt one C-level call, and one call is enough to allocate gigabytes
(``'x'.center(10**9)``, ``'%1000000000d' % 1``, ``[big] * 1000 | join``). So every operation that
can make a string longer than its inputs is given an estimate of its output, computed from its
arguments in time proportional to them, and refused when the estimate passes ``MAX_OUTPUT``:

* methods of strings (``center``, ``ljust``, ``rjust``, ``zfill``, ``expandtabs``, ``replace``,
  ``join``, ``translate``, ``format``, ``format_map``) and ``int.to_bytes``;
* the operators ``+``, ``%`` and ``~`` and every block the template buffers (``{% set %}``,
  ``{% filter %}``, macro bodies);
* filters: the growing ones by their arguments (``center``, ``indent``, ``wordwrap``, ``replace``,
  ``join``, ``format``, ``batch``, ``slice``), every other one by the size of its input;
* the value of every ``{{ expression }}`` before it becomes text.

"Size" is the length a value has as text (see :func:`weight`), counted with an early stop, so a
list holding the same long string a thousand times is as large as it would print.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Any

from pushpool.control_plane.errors import PushpoolError

MAX_OUTPUT = 1_000_000


class TemplateFailed(PushpoolError):
    """A user template could not be rendered; the message says why, in one line."""

    http_status = 400


def too_large(what: str) -> TemplateFailed:
    return TemplateFailed(f"template: {what} would be longer than {MAX_OUTPUT} characters")


def weight(value: Any, limit: int = MAX_OUTPUT) -> int:
    """About how many characters ``value`` has as text; stops counting once past ``limit``."""
    total = 0
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            total += item.bit_length() // 3 + 1
        else:
            total += 8  # numbers, None, undefined values, the sandbox's own objects: a short text
        if total > limit or seen > limit:
            return limit + 1
    return total


def check(what: str, size: int) -> None:
    if size > MAX_OUTPUT:
        raise too_large(what)


def check_values(what: str, *values: Any) -> None:
    total = 0
    for value in values:
        total += weight(value, MAX_OUTPUT - total)
        check(what, total)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


# --------------------------------------------------------------------------- printf and format specs

_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")
_FORMAT_NUMBERS = re.compile(r"\d+")


def check_printf(fmt: str, args: Any) -> None:
    """``fmt % args``: the format's own length, the arguments' sizes (each field may repeat a named one)
    and every width and precision."""
    extra, fields = 0, 0
    for match in _PRINTF_FIELD.finditer(fmt):
        fields += 1
        for number in match.groups():
            if number == "*":
                raise TemplateFailed("template: '*' widths are not allowed in %-formatting")
            extra += int(number or 0)
    repeats = fields if isinstance(args, Mapping) else 1
    check("a %-formatted string", len(fmt) + repeats * weight(args) + extra)


def check_format(fmt: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    """``fmt.format(*args, **kwargs)``: the same for ``{:>1000000000}``; nested fields are refused."""
    import string

    extra = 0
    try:
        fields = [spec for _literal, name, spec, _conversion in string.Formatter().parse(fmt) if name is not None]
    except ValueError:
        return  # format() raises the same error itself
    for spec in fields:
        if spec and "{" in spec:
            raise TemplateFailed("template: nested replacement fields are not allowed in format specs")
        extra += sum(int(n) for n in _FORMAT_NUMBERS.findall(spec or "")[:2])
    inputs = weight(list(args)) + weight(dict(kwargs))
    check("a formatted string", len(fmt) + len(fields) * inputs + extra)


# --------------------------------------------------------------------------- str methods


def _replace_size(s: str, old: Any, new: Any, count: Any = -1) -> int:
    old, new = str(old), str(new)
    if len(new) <= len(old):
        return len(s)
    hits = (len(s) + 1) if old == "" else s.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(s) + hits * (len(new) - len(old))


def _join_size(sep: str, items: list[Any]) -> int:
    return weight(items) + len(sep) * max(len(items) - 1, 0)


def _translate_size(s: str, table: Any) -> int:
    if not isinstance(table, Mapping):
        return len(s)
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    return len(s) * max(longest, 1)


def checked_call(func: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Check a method call from a template before it runs; returns the arguments to call with (a ``join``
    over an iterator is given the list it was checked with)."""
    target = getattr(func, "__wrapped__", func)
    owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
    if isinstance(owner, str):
        if name in ("center", "ljust", "rjust", "zfill"):
            check(f"str.{name}()", max(len(owner), _int(args[0] if args else kwargs.get("width"))))
        elif name == "expandtabs":
            tabsize = _int(args[0] if args else kwargs.get("tabsize", 8), 8)
            check("str.expandtabs()", len(owner) + owner.count("\t") * max(tabsize, 0))
        elif name == "replace" and len(args) >= 2:
            check("str.replace()", _replace_size(owner, *args[:3]))
        elif name == "join" and args:
            items = list(args[0])
            check("str.join()", _join_size(owner, items))
            return (items, *args[1:]), kwargs
        elif name == "translate" and args:
            check("str.translate()", _translate_size(owner, args[0]))
        elif name in ("format", "format_map"):
            if name == "format_map":
                check_format(owner, (), args[0] if args and isinstance(args[0], Mapping) else {})
            else:
                check_format(owner, args, kwargs)
    elif isinstance(owner, int) and name == "to_bytes":
        check("int.to_bytes()", _int(args[0] if args else kwargs.get("length", 1), 1))
    return args, kwargs


# --------------------------------------------------------------------------- filters


def _filter_checks() -> dict[str, Callable[..., None]]:
    def center(value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
        check("the center filter", max(weight(value), _int(width)))

    def indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> None:
        lines = str(value).count("\n") + 1
        pad = len(width) if isinstance(width, str) else _int(width)
        check("the indent filter", weight(value) + lines * max(pad, 0))

    def wordwrap(value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                 *_: Any, **__: Any) -> None:
        text = str(value)
        breaks = len(text) // max(_int(width, 79), 1) + text.count("\n") + 1
        check("the wordwrap filter", len(text) + breaks * len(str(wrapstring or "\n")))

    def replace(value: Any, old: Any = "", new: Any = "", count: Any = None, *_: Any, **__: Any) -> None:
        check("the replace filter", _replace_size(str(value), old, new, -1 if count is None else count))

    def fmt(value: Any, *args: Any, **kwargs: Any) -> None:
        check_printf(str(value), kwargs or args)

    def batch(value: Any, linecount: Any = 1, fill_with: Any = None, *_: Any, **__: Any) -> None:
        if fill_with is not None:
            check("the batch filter", _int(linecount) * max(weight(fill_with), 1))

    def slice_(value: Any, slices: Any = 1, fill_with: Any = None, *_: Any, **__: Any) -> None:
        check("the slice filter", _int(slices) * max(weight(fill_with), 1))

    return {"center": center, "indent": indent, "wordwrap": wordwrap, "replace": replace, "format": fmt,
            "batch": batch, "slice": slice_}


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Every filter wrapped: its growth check when it has one, else a check of the size of its input."""
    checks = _filter_checks()
    return {name: _bounded(name, function, checks.get(name)) for name, function in filters.items()}


def _bounded(name: str, function: Callable[..., Any], grows: Callable[..., None] | None) -> Callable[..., Any]:
    passes_context = getattr(function, "jinja_pass_arg", None) is not None

    @wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        head, rest = (args[:1], args[1:]) if passes_context else ((), args)
        if name == "join" and rest:
            rest = (list(rest[0]), *rest[1:])
            sep = rest[1] if len(rest) > 1 else kwargs.get("d", "")
            check("the join filter", _join_size(str(sep), rest[0]))
        elif grows is not None:
            grows(*rest, **kwargs)
        else:
            check_values(f"the input of the {name} filter", rest, kwargs)
        return function(*head, *rest, **kwargs)

    return bounded


# --------------------------------------------------------------------------- operators and buffers


class BoundedBuffer(list):
    """The list a buffered block (``{% set %}…{% endset %}``, ``{% filter %}``, a macro body) collects its
    output in: refuses to hold more than ``MAX_OUTPUT`` characters."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, piece: Any) -> None:
        self.size += weight(piece)
        check("a block's output", self.size)
        super().append(piece)

    def extend(self, pieces: Iterable[Any]) -> None:
        for piece in pieces:
            self.append(piece)


def checked_concat(pieces: Iterable[Any]) -> str:
    """``a ~ b ~ c`` (and every buffered block): the total is checked before the text is built."""
    items = list(pieces)
    check("a joined string", weight(items))
    return "".join(map(str, items))


def check_binop(op: str, left: Any, right: Any) -> None:
    if op == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        check("a concatenation", weight(left) + weight(right))
    elif op == "%" and isinstance(left, str):
        check_printf(left, right)
    elif op == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int) and times > 0:
                check("a repeated sequence", weight(seq) * times)
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > 4096:
            raise TemplateFailed("template: a product of numbers that large is not computed")
