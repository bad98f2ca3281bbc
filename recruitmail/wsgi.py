from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recruitmail.settings")
application = get_wsgi_application()

# What starting made (Django, the apps, their modules and models) lives as long as the process.
# Frozen, it is left out of the collector's full passes, which otherwise walk it all, at a
# random request: about 50 ms a pass, one every couple of hundred requests, against 10 ms frozen
# (gc callbacks over bench/pages.py's requests, docs/benchmarks.md).
gc.freeze()
