"""The README option table and conf/gunrunner.toml are generated from the option table."""

from __future__ import annotations

from gunrunner import _docs, config
from tests.helpers import REPO


def test_readme_reference_is_current() -> None:
    """README.md's options block equals what the option table generates."""
    readme = (REPO / "README.md").read_text()
    assert _docs.readme_with_reference(readme) == readme, "run: python -m gunrunner._docs"


def test_conf_reference_is_current_and_loads() -> None:
    """conf/gunrunner.toml is generated, and loads to exactly the defaults."""
    path = REPO / "conf" / "gunrunner.toml"
    assert path.read_text() == _docs.conf_toml(), "run: python -m gunrunner._docs"
    assert config.load({}, str(path), environ={}).options == config.Options()


def test_every_example_config_loads() -> None:
    """Every file in conf/ is a valid config."""
    paths = sorted((REPO / "conf").glob("*.toml"))
    assert len(paths) >= 3, paths  # gunrunner.toml, production.toml, development.toml
    for path in paths:
        config.load({}, str(path), environ={})
