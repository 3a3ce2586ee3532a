"""The pictures of ``finetuner ui`` in README.md: ``make screenshots`` (writes docs/ui-*.png).

A store seeded by the real capture path (tests/_ui_seed.py), the app served on 127.0.0.1, and
each main page shot in Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from finetuner_otel import Store  # noqa: E402
from finetuner_otel.testing import OpenAIServer  # noqa: E402
from tests._ui_seed import DATASET, Served, seed  # noqa: E402


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Debian's chromium is needed: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer() as server:
        seeded = seed(Path(tmp) / "finetuner.duckdb", server)
        store = Store(seeded.db)
        store.correct(seeded.tool_call, "Order A-1042 left the depot today.", "answer directly")
        store.accept(seeded.image_call)
        served = Served(seeded.db)
        pages = {
            "ui-datasets.png": "/",
            "ui-dataset.png": f"/datasets/{DATASET}",
            "ui-call.png": f"/calls/{seeded.tool_call}",
            "ui-compare.png": f"/evals/compare?a={seeded.baseline_run}&b={seeded.candidate_run}",
            "ui-evals.png": "/evals",
        }
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                for name, path in pages.items():
                    page.goto(served.url + path)
                    page.screenshot(path=str(out / name), full_page=False)
                    print(f"wrote {out / name}")
                browser.close()
        finally:
            served.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
