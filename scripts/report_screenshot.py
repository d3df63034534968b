"""Screenshot a run's report in headless Chromium (the README's picture), with the same check the
tests make: every image decoded, no console error.

    python scripts/report_screenshot.py runs/demo docs/report-screenshot.png
"""

import sys
from pathlib import Path

from grokscope.report import build_run_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the browser check is test support
from browser import check_page  # noqa: E402

run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
check = check_page(build_run_report(run_dir), out)
print(check)
if check.images_decoded != check.images or check.console_errors:
    sys.exit(1)
