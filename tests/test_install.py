"""A plain (non-editable) install, used as a newcomer uses it: the README's commands from the
repository folder, where the checkout's minigan/ shadows the installed package, and the
`minigan` console script from elsewhere, whose kernels compile once into the installed package's
numba cache and are reused by the next run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "ellipses", "--limit", "32", "--image-size", "8", "--arch", "dcgan",
        "--width", "4", "--z-dim", "8", "--batch-size", "8", "--no-progress"]
COMPILING = "compiling kernels, first run only"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`pip install --no-deps .` into a folder of its own: a wheel built and installed, as
    `pip install .` does, without touching this environment's editable install."""
    target = tmp_path_factory.mktemp("site")
    # from a copy without build outputs: setuptools reuses a stale build/lib, which would hide
    # a file that setup.py no longer ships
    source = tmp_path_factory.mktemp("source") / "minigan"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
           str(target), str(source)]
    if _can_build_here():
        cmd.insert(5, "--no-build-isolation")  # no index needed to build
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    assert (target / "minigan" / "kernels" / "conv.py").is_file(), "kernels not installed"
    assert not (target / "kernels").exists(), "kernels installed as a top-level package"
    source = {p.parent.relative_to(REPO) for p in (REPO / "minigan").rglob("__init__.py")}
    missing = sorted(str(s) for s in source if not (target / s / "__init__.py").is_file())
    assert not missing, f"subpackages left out of the wheel: {missing}"
    return target


def _can_build_here() -> bool:
    """Whether this environment's setuptools can build a wheel itself (bdist_wheel is built in
    from setuptools 70.1, or comes with the wheel package); else pip builds in isolation."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    import setuptools

    return tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1)


def _run(args, cwd, site, **env):
    """Run a command with the installed package first on the path (after the working folder,
    which Python always puts first for `python -m`)."""
    environ = dict(os.environ, PYTHONPATH=str(site), **env)
    environ.pop("NUMBA_CACHE_DIR", None)
    res = subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True,
                         timeout=600)
    return res


def _ok(res, what):
    assert res.returncode == 0, f"{what} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def test_readme_commands_from_the_repository_folder(site, tmp_path):
    run = tmp_path / "run"
    py = [sys.executable, "-m", "minigan"]
    where = _ok(_run([sys.executable, "-c", "import minigan, minigan.kernels as k; "
                      "print(minigan.__file__); print(k.__file__)"], REPO, site), "import")
    files = where.stdout.split()
    assert files == [str(REPO / "minigan" / "__init__.py"), str(REPO / "kernels" / "__init__.py")]
    _ok(_run([*py, "train", *TINY, "--epochs", "1", "--out", str(run)], REPO, site), "train")
    res = _ok(_run([*py, "train", "--resume", str(run), "--epochs", "2", "--no-progress"],
                   REPO, site), "train --resume")
    assert "from step 4" in res.stdout
    _ok(_run([*py, "sample", str(run), "-n", "16", "-o", str(tmp_path / "s.png")], REPO, site),
        "sample")
    _ok(_run([*py, "interpolate", str(run), "-o", str(tmp_path / "w.gif"), "--steps", "3",
              "--rows", "2"], REPO, site), "interpolate")
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "w.gif").stat().st_size > 0
    res = _run([*py, "eval", str(run), "-n", "16"], REPO, site)  # ellipses: no classifier
    assert res.returncode == 2 and "eval works for mnist and quickdraw" in res.stderr, res.stderr


def test_console_script_compiles_once_into_the_installed_cache(site, tmp_path):
    script = site / "bin" / "minigan"
    assert script.is_file(), "pip did not write the console script"
    cache = site / "minigan" / "kernels" / "__pycache__"
    first = _ok(_run([sys.executable, str(script), "train", *TINY, "--steps", "2", "--out",
                      str(tmp_path / "a")], tmp_path, site), "minigan train")
    assert COMPILING in first.stdout
    assert sorted(p.name for p in cache.glob("norm._bn_*.nbi")), "no numba cache written"
    again = _ok(_run([sys.executable, str(script), "train", *TINY, "--steps", "2", "--out",
                      str(tmp_path / "b")], tmp_path, site), "minigan train, second run")
    assert COMPILING not in again.stdout, "the kernels compiled again: the cache was not reused"


def test_read_only_install_caches_in_the_users_folder(site, tmp_path):
    """Where site-packages cannot be written (a system install), numba keeps the machine code
    in the user's cache folder instead: the second run compiles nothing."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(site), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount a read-only copy of the install here (needs root)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)]).returncode != 0:
            pytest.skip("cannot remount the install read-only here")
        assert subprocess.run(["touch", str(ro / "probe")], capture_output=True).returncode
        home = tmp_path / "home"
        home.mkdir()
        code = "import minigan.precompile as p; print(p.compile_cpu_kernels())"
        first = _ok(_run([sys.executable, "-c", code], tmp_path, ro, HOME=str(home),
                         XDG_CACHE_HOME=str(home / ".cache")), "compile, read-only install")
        assert COMPILING in first.stdout
        assert list((home / ".cache" / "numba").rglob("norm._bn_forward_cpu-*.nbi"))
        again = _ok(_run([sys.executable, "-c", code], tmp_path, ro, HOME=str(home),
                         XDG_CACHE_HOME=str(home / ".cache")), "second run, read-only install")
        assert COMPILING not in again.stdout
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_the_export_page_is_installed(site, tmp_path):
    """`minigan export --format web` copies index.html and two scripts from the installed
    package: they are package data, not Python, and must be in the wheel."""
    web = site / "minigan" / "export" / "web"
    assert sorted(p.name for p in web.iterdir()) == ["generator.js", "index.html", "page.js"]
    code = ("from minigan.export.page import WEB, STATIC; "
            "print(WEB.resolve()); print(all((WEB / n).is_file() for n in STATIC))")
    res = _ok(_run([sys.executable, "-c", code], tmp_path, site), "import minigan.export")
    assert res.stdout.split() == [str(web.resolve()), "True"]
