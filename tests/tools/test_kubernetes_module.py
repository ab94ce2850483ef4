"""tools/kubernetes/go.mod's replace block is generated from k8s.io/kubernetes's own go.mod (one replace per staging
module, at the published version of the same release): it must match what `tools/kubernetes.sh print-replaces`
derives now, or a version bump left it stale. Downloads the module through the Go proxy once (then cached)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "kubernetes.sh"
GO_MOD = ROOT / "tools" / "kubernetes" / "go.mod"


def test_the_replace_block_matches_the_release_go_mod() -> None:
    result = subprocess.run([str(SCRIPT), "print-replaces"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    committed = re.search(r"^replace \(\n.*?^\)\n", GO_MOD.read_text(), re.MULTILINE | re.DOTALL)
    assert committed, "no replace block in tools/kubernetes/go.mod"
    assert result.stdout == committed.group(0), "stale: paste `tools/kubernetes.sh print-replaces` into go.mod"
    assert result.stdout.count("=>") == 31


def test_bad_arguments_are_refused() -> None:
    for args in (["bogus"], ["install", "extra"], []):
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, args
        assert "Usage" in result.stderr, args
