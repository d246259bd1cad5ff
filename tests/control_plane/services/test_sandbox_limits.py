"""One C-level call can allocate gigabytes before a time limit looks: every such bomb is refused from its
arguments, in a process whose address space is capped, without the process growing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pushpool.control_plane.services.sandbox import TemplateFailed, render

C_LEVEL_BOMBS = [
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.rjust(10**9) }}",
    "{{ '1'.zfill(10**9) }}",
    "{{ ('\t' * 99999).expandtabs(99999) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ '%(a)s' * 9999 % {'a': 'x' * 99999} }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format('x' * 99999) }}",
    "{{ ('x' * 99999).replace('x', 'y' * 99999) }}",
    "{{ ('x' * 99999).replace('', 'y' * 99) }}",
    "{{ ('x' * 99999)|replace('x', 'y' * 99999) }}",
    "{{ ('x' * 99999).translate({120: 'y' * 99999}) }}",
    "{{ ('y' * 99999).join(['x'] * 99999) }}",
    "{{ (['x'] * 99999)|join('y' * 99999) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ ('\n' * 99999)|indent(99999) }}",
    "{{ ('a ' * 50000)|wordwrap(1, wrapstring='x' * 99999) }}",
    "{{ '%1000000000s'|format('x') }}",
    "{{ [1]|batch(10**9, 'x') }}",
    "{{ [1]|slice(10**8) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ ['x' * 99999] * 99999 }}",
    "{% set s = 'x' * 99999 %}{{ [s, s, s, s, s, s, s, s, s, s, s]|tojson }}",
    "{% set s = 'x' * 99999 %}{{ [s, s, s, s, s, s, s, s, s, s, s] }}",
    "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('x' * 99999, 40) }}",
    "{% macro d(s, n) %}{% if n %}{{ d(s + s, n - 1) }}{% endif %}{% endmacro %}{{ d('x' * 99999, 40) }}",
    "{% macro m(x, n) %}{% if n %}{{ m(x * x, n - 1) }}{% endif %}{% endmacro %}{{ m(10 ** 60, 40) }}",
    "{% set big %}{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endset %}{{ big|length }}",
    "{% filter upper %}{% for i in range(99999) %}{{ 'x' * 99999 }}{% endfor %}{% endfilter %}",
    "{{ ['x' * 99999]|map('center', 10**9)|list }}",
]

CAPPED = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space
    from pushpool.control_plane.services.sandbox import TemplateFailed, render
    results = []
    for template in json.loads(sys.stdin.read()):
        started = time.monotonic()
        try:
            out = render(template, {})
            outcome = "rendered %d characters" % len(out)
        except TemplateFailed as exc:
            outcome = "refused: " + str(exc)
        except BaseException as exc:
            outcome = "escaped: " + type(exc).__name__
        results.append([template, outcome, time.monotonic() - started])
    # VmHWM is this process's own peak (ru_maxrss would include the parent's, kept across exec).
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"results": results, "max_rss_mb": peak_kb / 1024}))
""")


def test_c_level_bombs_are_refused_before_they_allocate():
    proc = subprocess.run([sys.executable, "-c", CAPPED], input=json.dumps(C_LEVEL_BOMBS), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for template, outcome, seconds in report["results"]:
        assert outcome.startswith("refused: template: "), (template, outcome)
        assert seconds < 2.5, (template, seconds)
    assert report["max_rss_mb"] < 300, report["max_rss_mb"]


@pytest.mark.parametrize("template, expected", [
    ("{{ 'ab'.center(6, '*') }}", "**ab**"),
    ("{{ '%05d|%-3s|' % (42, 'x') }}", "00042|x  |"),
    ("{{ '{:>4}{}'.format(1, 'z') }}", "   1z"),
    ("{{ 'a-b'.replace('-', '+') }}", "a+b"),
    ("{{ ', '.join(['a', 'b']) }}", "a, b"),
    ("{{ ['a', 'b']|join('/') }}", "a/b"),
    ("{{ 'x'|indent(2, first=True) }}", "  x"),
    ("{{ [1, 2, 3]|batch(2, 0)|list }}", "[[1, 2], [3, 0]]"),
    ("{% set s %}{{ 'a' ~ 'b' }}{% endset %}{{ s|upper }}", "AB"),
    ("{{ 'a' + 'b' }}{{ [1] + [2] }}", "ab[1, 2]"),
    ("{% filter upper %}hi{% endfilter %}", "HI"),
])
def test_ordinary_string_work_still_renders(template, expected):
    assert render(template, {}) == expected


def test_memory_error_is_a_failed_render(monkeypatch):
    import pushpool.control_plane.services.sandbox_limits as limits

    def exhausted(*_args, **_kwargs):
        raise MemoryError

    monkeypatch.setattr(limits, "check_binop", exhausted)
    monkeypatch.setattr("pushpool.control_plane.services.sandbox.check_binop", exhausted)
    with pytest.raises(TemplateFailed, match="ran out of memory"):
        render("{{ 'a' + 'b' }}", {})
