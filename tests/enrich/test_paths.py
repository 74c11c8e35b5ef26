"""paths.resolve: base + raw to an absolute host path, symlinks in the directory part."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinel_edge.enrich.paths import normalize, resolve


def b(p: Path | str) -> bytes:
    return os.fsencode(str(p))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "f").write_bytes(b"x")
    (tmp_path / "dirlink").symlink_to(real)
    (real / "flink").symlink_to(real / "sub" / "f")
    return tmp_path.resolve()


def test_absolute_raw_ignores_base(tree: Path) -> None:
    assert resolve(b"/nonexistent/base", b(tree / "real/sub/f"), follow=True) == b(tree / "real/sub/f")


def test_relative_raw_joined_with_base(tree: Path) -> None:
    assert resolve(b(tree / "real"), b"sub/f", follow=False) == b(tree / "real/sub/f")
    assert resolve(b(tree / "real"), b"./sub/../sub//f", follow=False) == b(tree / "real/sub/f")


def test_symlinked_directory_resolved(tree: Path) -> None:
    assert resolve(b(tree), b"dirlink/sub/f", follow=False) == b(tree / "real/sub/f")
    assert resolve(b(tree / "dirlink"), b"sub/f", follow=False) == b(tree / "real/sub/f")


def test_dotdot_after_symlink_follows_kernel_semantics(tree: Path) -> None:
    # real/sub/up -> real: "up/.." is real's parent (tree), lexically it would be real/sub
    (tree / "real" / "sub" / "up").symlink_to(tree / "real")
    assert resolve(b(tree / "real" / "sub"), b"up/../g", follow=False) == b(tree / "g")
    assert resolve(b(tree / "real" / "sub" / "up"), b"../g", follow=False) == b(tree / "g")


def test_final_symlink_followed_only_when_asked(tree: Path) -> None:
    assert resolve(b(tree / "real"), b"flink", follow=False) == b(tree / "real/flink")
    assert resolve(b(tree / "real"), b"flink", follow=True) == b(tree / "real/sub/f")


def test_missing_parts_fall_back_to_lexical(tree: Path) -> None:
    assert resolve(b(tree), b"gone/x/../y", follow=True) == b(tree / "gone/y")
    assert resolve(b"", b"rel", follow=False) == b"/rel"
    assert resolve(b"/", b"etc/../tmp/z", follow=False) == b"/tmp/z"


def test_empty_raw_names_base(tree: Path) -> None:
    assert resolve(b(tree / "dirlink"), b"", follow=True) == b(tree / "real")
    assert resolve(b(tree / "real"), b".", follow=False) == b(tree / "real")


def test_hostile_bytes_never_raise(tree: Path) -> None:
    assert resolve(b(tree), b"new\nline", follow=True) == b(tree) + b"/new\nline"
    assert resolve(b(tree), b"bad\xff\xfe", follow=True) == b(tree) + b"/bad\xff\xfe"
    assert resolve(b(tree), b"nul\0byte", follow=True) == b(tree) + b"/nul\0byte"
    long = b"/".join([b"d" * 250] * 17)  # > PATH_MAX and names near NAME_MAX
    assert resolve(b(tree), long, follow=True) == b(tree) + b"/" + long
    huge = b"n" * 5000  # one name longer than NAME_MAX: lstat raises, we do not
    assert resolve(b(tree), huge, follow=True) == b(tree) + b"/" + huge


def test_root_prefix(tmp_path: Path) -> None:
    root = tmp_path / "container"
    (root / "etc").mkdir(parents=True)
    (root / "conf").symlink_to("etc")  # relative link inside the root
    assert resolve(b"/", b"conf/passwd", follow=False, root=str(root)) == b"/etc/passwd"
    assert resolve(b"/", b"etc/passwd", follow=False, root=str(root)) == b"/etc/passwd"


def test_normalize() -> None:
    assert normalize(b"//a/./b/../c/") == b"/a/c"
    assert normalize(b"/../..") == b"/"
    assert normalize(b"rel") == b"/rel"
