"""Keystone's WSGI app for gunicorn (start.sh).

Keystone parses `sys.argv` with oslo.config when it loads, and would reject gunicorn's own
arguments; hand it an empty command line. Its config comes from OS_KEYSTONE_CONFIG_FILES.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
