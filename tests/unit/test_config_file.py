"""config/ckptd.toml documents every setting, and its documented defaults are the real ones."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ckptd.core.config import SIMPLE_FIELDS, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "ckptd.toml"


def commented_settings() -> dict[str, object]:
    """The '# key = value' lines of the example, parsed as TOML."""
    top = EXAMPLE.read_text().split("# [queues.", 1)[0]  # the global settings only
    lines = [m.group(1) for m in re.finditer(r"^# ([a-z0-9_]+ = .+)$", top, re.M)]
    return tomllib.loads("\n".join(lines))


def test_every_setting_is_documented_in_the_example_file() -> None:
    documented = commented_settings()
    missing = sorted(set(SIMPLE_FIELDS) - set(documented))
    assert not missing, f"config/ckptd.toml does not document: {missing}"


def test_the_documented_defaults_are_the_defaults(tmp_path: Path) -> None:
    documented = {k: v for k, v in commented_settings().items() if k in SIMPLE_FIELDS}
    config = tmp_path / "all.toml"
    config.write_text("\n".join(f"{k} = {v!r}".replace("'", '"') if isinstance(v, str)
                                else f"{k} = {str(v).lower()}" for k, v in documented.items()))
    assert load_settings(str(config), env={}) == Settings()


def test_the_example_file_itself_loads() -> None:
    assert load_settings(str(EXAMPLE), env={}) == Settings()
