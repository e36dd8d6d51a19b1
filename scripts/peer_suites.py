#!/usr/bin/env python3
"""Run the reference packages' own test suites against tokenledger's drop-in layers (``ledger.compat.*``).

For each package: download its pinned source distribution from PyPI into a temporary directory (never into this
repository: their code is not ours), extract its ``tests/``, and run them with pytest under an import hook that
resolves the package's module names to ours (``context_window_economics.allocation`` ->
``ledger.compat.cwep.allocation``). The installed reference packages (test oracles in the dev extra) are never
imported by these runs: the hook answers first, and a test that reaches the real package fails the run.

The expected failures are exactly the documented deviations: ``scripts/peer_expected/<name>.json`` lists each by
test id with the reason (and ``skip`` lists tests that do not apply, e.g. packaging metadata of their distribution).
The run fails when a test outside the list fails, and when a listed test passes (the list must stay exact).

    scripts/peer_suites.sh              # all three
    scripts/peer_suites.sh cwep         # one
    scripts/peer_suites.sh --oracle     # the same suites against the installed reference packages (their baseline)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGES = {
    # name: (PyPI distribution, pinned version, {their module: our module})
    "cwep": ("context-window-economics", "0.1.1", {"context_window_economics": "ledger.compat.cwep"}),
    "tbc": ("token-budget-contracts", "0.3.0", {"tbcontracts": "ledger.compat.tbc"}),
    "acat": ("agent-cost-attribution", "0.1.1", {"agent_cost_attribution": "ledger.compat.acat"}),
}

CONFTEST = '''
"""Written by tokenledger's scripts/peer_suites.py: the package's module names resolve to tokenledger's layer."""
import importlib
import importlib.abc
import importlib.util
import sys

ALIASES = {aliases!r}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        for theirs, ours in ALIASES.items():
            if name == theirs or name.startswith(theirs + "."):
                target_name = ours + name[len(theirs):]
                if importlib.util.find_spec(target_name) is None:
                    # never fall through to the installed reference package: a name we lack is a failure
                    raise ImportError(f"{name}: tokenledger has no {target_name}")
                return importlib.util.spec_from_loader(name, self, origin=target_name)
        return None

    def create_module(self, spec):
        return importlib.import_module(spec.origin)

    def exec_module(self, module):
        """Nothing to run: create_module returned tokenledger's module, already imported."""


sys.meta_path.insert(0, _Alias())
for theirs in ALIASES:
    for loaded in [m for m in sys.modules if m == theirs or m.startswith(theirs + ".")]:
        del sys.modules[loaded]
'''


def fetch(dist: str, version: str, into: Path) -> Path:
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                          "--dest", str(into), f"{dist}=={version}"], capture_output=True, text=True)
    if got.returncode != 0:
        raise SystemExit(f"could not download {dist}=={version} from PyPI:\n{got.stderr[-2000:]}")
    (archive,) = into.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name and m.isfile()
                   and not m.name.startswith("/") and ".." not in Path(m.name).parts]
        tar.extractall(into / "src", members=members, filter="data")
    (tests,) = (into / "src").glob("*/tests")
    return tests


def run(name: str, workdir: Path, *, oracle: bool = False) -> bool:
    dist, version, aliases = PACKAGES[name]
    expected = json.loads((HERE / "peer_expected" / f"{name}.json").read_text())
    fails: dict[str, str] = expected.get("fail", {})
    skips: dict[str, str] = expected.get("skip", {})
    tests = fetch(dist, version, workdir / name)
    if not oracle:
        (tests / "conftest.py").write_text(CONFTEST.replace("{aliases!r}", repr(aliases)))
    report = workdir / f"{name}.json"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tests),
            "-o", "addopts=", "-o", "testpaths=", str(tests), f"--junitxml={report}.xml"]
    for test_id in skips:  # a whole file (no ::) is ignored, so its imports are never collected
        args += ["--deselect" if "::" in test_id else "--ignore", f"{tests}/{test_id}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True)
    failed = sorted(_failures(Path(f"{report}.xml"), tests))
    passed, total = _counts(Path(f"{report}.xml"))
    if oracle:  # the reference package itself: every applicable test must pass
        fails = {}
    unexpected = [t for t in failed if t not in fails]
    fixed = [t for t in fails if t not in failed]
    whose = ", the reference package itself" if oracle else ""
    print(f"{name} ({dist} {version}{whose}): {passed} of {total} passed, {len(failed)} failed "
          f"({len(failed) - len(unexpected)} expected), {len(skips)} not applicable")
    for t in failed:
        print(f"  {'expected' if t in fails else 'UNEXPECTED'} failure {t}" + (f": {fails[t]}" if t in fails else ""))
    for t in fixed:
        print(f"  UNEXPECTED pass {t} (listed as failing: {fails[t]}); update scripts/peer_expected/{name}.json")
    for t, why in skips.items():
        print(f"  not applicable {t}: {why}")
    if done.returncode not in (0, 1) or total == 0:
        print(done.stdout[-3000:] + done.stderr[-3000:])
        return False
    return not unexpected and not fixed


def _failures(junit: Path, tests: Path) -> list[str]:
    """Ids (``test_x.py::[TestClass::]name``) of the failed or errored cases in a JUnit report."""
    import xml.etree.ElementTree as ET

    out = []
    report = ET.parse(junit)  # noqa: S314 (pytest's own report, written just now)
    for case in report.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            classname, name = case.get("classname", ""), case.get("name", "")
            if not classname:  # a module that failed to import: the case is named after the module
                out.append(f"{name.split('/')[-1].removesuffix('.py')}.py")
                continue
            parts = classname.split(".")  # test_x or test_x.TestClass (rootdir = the tests)
            mod = next((i for i, p in enumerate(parts) if p.startswith("test_")), 0)
            out.append("::".join([f"{parts[mod]}.py", *parts[mod + 1:], name]))
    return out


def _counts(junit: Path) -> tuple[int, int]:
    import xml.etree.ElementTree as ET

    cases = list(ET.parse(junit).iter("testcase"))  # noqa: S314 (pytest's own report, written just now)
    bad = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None
              or c.find("skipped") is not None)
    return len(cases) - bad, len(cases)


def main() -> None:
    args = sys.argv[1:]
    oracle = "--oracle" in args  # run the suites against the installed reference packages (the suites' own baseline)
    names = [a for a in args if a != "--oracle"] or list(PACKAGES)
    for n in names:
        if n not in PACKAGES:
            raise SystemExit(f"unknown package {n!r}: choose from {', '.join(PACKAGES)}")
    with tempfile.TemporaryDirectory(prefix="peer-suites-") as tmp:
        ok = [run(n, Path(tmp), oracle=oracle) for n in names]
    raise SystemExit(0 if all(ok) else 1)


if __name__ == "__main__":
    main()
