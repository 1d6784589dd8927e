"""Hatchling build hook: bundle the front-ends in js/ into msda_widgets/static/.

Runs for every build hatchling makes — wheel, editable wheel (``pip install -e .``, so
``make install`` too) and sdist — before the files are collected:

* the bundles exist and are at least as new as every source (js/src, package.json,
  package-lock.json)  -> nothing to do (also the case when building a wheel from the sdist,
  which ships the bundles);
* otherwise, with npm on PATH -> ``npm ci`` (only when js/node_modules lacks esbuild) then
  ``npm run build``;
* npm missing and the bundles stale -> a warning, and the stale bundles are used;
* npm missing and a bundle absent -> the build fails and says what to install.

Environment: ``MSDA_SKIP_JS_BUILD=1`` never runs npm (the bundles must then exist);
``MSDA_FORCE_JS_BUILD=1`` rebuilds even when the bundles look up to date.

The bundles are git-ignored; pyproject.toml lists them as hatch ``artifacts`` so that they
are packed anyway.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLES = ("keyboard.js", "download.js", "upload.js")
STATIC = Path("msda_widgets") / "static"
JS = Path("js")
_TAIL = 4000  # characters of npm output quoted in an error


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class JSBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        js_dir = root / JS
        outputs = [root / STATIC / name for name in BUNDLES]
        missing = [p for p in outputs if not p.is_file()]

        if not (js_dir / "package.json").is_file():
            # A tree without the JS sources (should not happen: the sdist ships js/).
            if missing:
                raise RuntimeError(self._missing_message(missing, "js/package.json is absent"))
            return

        if _truthy("MSDA_SKIP_JS_BUILD"):
            if missing:
                raise RuntimeError(self._missing_message(missing, "MSDA_SKIP_JS_BUILD is set"))
            self.app.display_info("msda_widgets: MSDA_SKIP_JS_BUILD set, using the existing front-end bundles")
            return

        if not missing and not _truthy("MSDA_FORCE_JS_BUILD") and self._up_to_date(js_dir, outputs):
            self.app.display_debug("msda_widgets: front-end bundles are up to date")
            return

        npm = shutil.which("npm")
        if npm is None:
            if missing:
                raise RuntimeError(self._missing_message(missing, "npm was not found on PATH"))
            self.app.display_warning(
                "msda_widgets: js/ sources are newer than msda_widgets/static/ but npm was not found "
                "on PATH; packaging the existing (stale) front-end bundles"
            )
            return

        if not (js_dir / "node_modules" / "esbuild" / "package.json").is_file():
            self.app.display_waiting("msda_widgets: installing the front-end build tools (npm ci)")
            self._npm(npm, ["ci", "--no-audit", "--no-fund"], js_dir)
        self.app.display_waiting("msda_widgets: bundling the front-ends (npm run build)")
        self._npm(npm, ["run", "build"], js_dir)

        still_missing = [p for p in outputs if not p.is_file()]
        if still_missing:
            raise RuntimeError(self._missing_message(still_missing, "`npm run build` did not write them"))
        for p in outputs:  # mark them newer than the sources even if esbuild left a file untouched
            p.touch()
        self.app.display_success("msda_widgets: front-end bundles written to msda_widgets/static/")

    @staticmethod
    def _sources(js_dir: Path) -> list[Path]:
        files = [p for p in (js_dir / "src").rglob("*") if p.is_file()]
        files += [p for p in (js_dir / "package.json", js_dir / "package-lock.json") if p.is_file()]
        return files

    def _up_to_date(self, js_dir: Path, outputs: list[Path]) -> bool:
        sources = self._sources(js_dir)
        if not sources:
            return True
        newest_source = max(p.stat().st_mtime for p in sources)
        oldest_output = min(p.stat().st_mtime for p in outputs)
        return oldest_output >= newest_source

    @staticmethod
    def _npm(npm: str, args: list[str], cwd: Path) -> None:
        cmd = [npm, *args]
        try:
            done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise RuntimeError(f"msda_widgets: could not run {' '.join(cmd)} in {cwd}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-_TAIL:]
            raise RuntimeError(
                f"msda_widgets: `npm {' '.join(args)}` failed in {cwd} (exit {done.returncode}):\n{output}"
            )

    @staticmethod
    def _missing_message(missing: list[Path], why: str) -> str:
        names = ", ".join(str(STATIC / p.name) for p in missing)
        return (
            f"msda_widgets: the front-end bundles ({names}) are missing and cannot be built: {why}. "
            "Install Node.js >= 18 with npm (https://nodejs.org) and build again, or run "
            "`npm --prefix js ci && npm --prefix js run build` yourself first. "
            "(Built wheels and the sdist already contain the bundles.)"
        )
