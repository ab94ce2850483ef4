"""Figures for the record: each service's idle resident memory and its time from start to ready.

Measured when the session's stack starts (vigie_stack.Service.start polls /readyz every 5 ms, then reads VmRSS from
/proc/<pid>/status); printed here and in the terminal summary. Only gross regressions fail.
"""

from __future__ import annotations


def test_idle_memory_and_time_to_ready(stack):
    for service in (stack.user, stack.order):
        print(
            f"\n{service.name}: ready {service.startup_seconds * 1000:.0f} ms after start, "
            f"idle RSS {service.idle_rss_kib / 1024:.1f} MiB"
        )
        assert service.idle_rss_kib < 200 * 1024, "idle resident memory far above what a small service needs"
        assert service.startup_seconds < 10, "start to ready far slower than expected"
