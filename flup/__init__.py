"""WSGI servers for FastCGI, SCGI and AJP, and WSGI clients for FastCGI and SCGI.

This is a maintained fork of flup 1.0.3 that keeps its import paths, class
names and keywords.  The package installs a ``NullHandler`` on the ``flup``
logger and no other handler, so applications decide where log lines go.
"""

import logging

__version__ = '1.1.0.dev0'

logging.getLogger('flup').addHandler(logging.NullHandler())
