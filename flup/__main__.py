"""``python -m flup``: serve a WSGI application over FastCGI (see flup._cli)."""

from __future__ import absolute_import

import sys

from flup._cli import main

if __name__ == '__main__':
    sys.exit(main())
