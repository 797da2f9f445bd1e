"""Infrastructure tests: the IAM coverage test runs the functions' code in-process on moto."""
from __future__ import annotations

from devtools import moto_fixes

moto_fixes.apply()  # one table copy per moto transaction, transactions serialised
