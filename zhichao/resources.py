"""Where the shipped configuration lives.

In a wheel the repository's ``config/`` folder is installed as ``zhichao/config``; in a
source checkout (editable install, tests) it is the ``config/`` folder beside this package.
A site can point at its own folder instead; callers take that as an argument.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder with the example settings and ``rules/`` shipped with zhichao."""
    for candidate in (_PACKAGE_DIR / "config", _PACKAGE_DIR.parent / "config"):
        if (candidate / "rules").is_dir():
            return candidate
    raise FileNotFoundError(
        f"zhichao's config folder is missing: looked in {_PACKAGE_DIR / 'config'} "
        f"and {_PACKAGE_DIR.parent / 'config'}"
    )


def rules_dir() -> Path:
    """The folder of rule tables shipped with zhichao (``config/rules``)."""
    return config_dir() / "rules"
