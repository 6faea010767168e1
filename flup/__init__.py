"""WSGI servers for FastCGI, SCGI and AJP, and WSGI clients for FastCGI and SCGI.

This is a maintained fork of flup 1.0.3 that keeps its import paths, class
names and keywords.  The package installs a ``NullHandler`` on the ``flup``
logger and no other handler, so applications decide where log lines go.
"""

import logging

try:
    import six  # noqa: F401 (checked here so that every module can use it)
except ImportError:  # a vendored copy without its one dependency
    raise ImportError('flup needs the six package: install it with '
                      '"pip install six" (Debian: apt-get install python3-six)')

__version__ = '1.1.0.dev0'

logging.getLogger('flup').addHandler(logging.NullHandler())
