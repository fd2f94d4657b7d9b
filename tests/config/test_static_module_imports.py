"""The page scripts share code through ES module imports (static/playground/net.js), and
production serves every static file under its hashed name with a year's ``immutable``
caching: ``collectstatic`` must rewrite each import to the imported file's hashed name, or
a browser would keep running a script from before a deploy against pages after it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMPORT = re.compile(r"""^import\s+\{[^}]*\}\s+from\s+"([^"]+)";$""", re.MULTILINE)


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """``collectstatic`` as production runs it (DEBUG off: the manifest storage)."""
    root = tmp_path_factory.mktemp("static")
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "static-imports-test",
        "BYOK_ENCRYPTION_KEY": "static-imports-test",
        "ALLOWED_HOSTS": "testserver",
        "STATIC_ROOT": str(root),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=REPO, env=env, check=True, capture_output=True,
    )  # fmt: skip
    manifest = json.loads((root / "staticfiles.json").read_text())["paths"]
    return root, manifest


def sources_importing() -> list[str]:
    """Static paths (as the manifest names them) of the project's scripts with imports."""
    found = []
    for path in sorted((REPO / "static").rglob("*.js")):
        if IMPORT.search(path.read_text()):
            found.append(path.relative_to(REPO / "static").as_posix())
    return found


def test_the_page_scripts_share_the_network_pause():
    # What this test guards exists: three page scripts import one module.
    assert {"playground/playground.js", "playground/job.js", "playground/compare.js"} <= set(
        sources_importing()
    )


@pytest.mark.parametrize("name", sources_importing())
def test_each_import_is_rewritten_to_the_hashed_file(collected, name):
    root, manifest = collected
    hashed = root / manifest[name]
    assert hashed.name != Path(name).name  # served under a hashed name
    imports = IMPORT.findall(hashed.read_text())
    assert imports
    folder = Path(name).parent
    for target in imports:
        # The import names the hashed copy of the file it imports, and that copy exists.
        imported = (folder / target).as_posix().replace("/./", "/")
        original = next(src for src, dst in manifest.items() if dst == imported)
        assert original != imported, f"{name} imports {target}, not its hashed name"
        assert (root / imported).is_file()
