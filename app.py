"""``streamlit run app.py [-- MODEL]``: the filter-inspector dashboard from a checkout.

A thin entry: everything lives in :mod:`inspector.dashboard`. The repository root is put on
``sys.path`` so this works without installing the package.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspector.dashboard.main import main

main()
