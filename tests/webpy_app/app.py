#!/usr/bin/env python
"""A small web.py application for the end-to-end tests of flup's FastCGI servers.

Run it the ways web.py applications are deployed::

    python app.py fastcgi 127.0.0.1:9000    # web.py binds the address
    spawn-fcgi -a 127.0.0.1 -p 9000 -n -- python app.py fastcgi
                                            # the socket is descriptor 0

web.py imports ``flup.server.fcgi`` itself, so ``PYTHONPATH`` decides which
flup serves: the tests put the repository root first.  The same file runs
on web.py 0.39 (Python 2.7) and 0.76 (Python 3.10 and later).

Routes:

``GET /``
    A fixed greeting.
``GET /info``
    JSON: web.py's view of the request path, the WSGI variables the tests
    check, and where ``flup`` was imported from.
``POST /echo``
    JSON: the length and SHA-256 of the request body.
``GET /sleep?seconds=S``
    Sleeps S seconds (at most 10), then responds.
``GET /boom``
    Raises in the handler; web.py catches it and sends its own 500 page.
``GET /boom-wsgi``
    Raises in a WSGI middleware outside web.py, so flup's error handling
    runs.
"""

from __future__ import absolute_import, print_function

import hashlib
import json
import logging
import os
import sys
import threading
import time

import web

# A string that must never reach a visitor: the tests look for it in the 500 pages.
SECRET_MARKER = 'webpy-test-secret-7f3a'
MAX_SLEEP = 10.0  # seconds

urls = (
    '/', 'Index',
    '/info', 'Info',
    '/echo', 'Echo',
    '/sleep', 'Sleep',
    '/boom', 'Boom',
)


class Index(object):
    def GET(self):
        web.header('Content-Type', 'text/plain; charset=utf-8')
        return 'hello from web.py\n'


def _json(document):
    web.header('Content-Type', 'application/json')
    return json.dumps(document, sort_keys=True)


class Info(object):
    def GET(self):
        environ = web.ctx.environ
        return _json({
            'ctx_path': web.ctx.path,
            'ctx_homepath': web.ctx.homepath,
            'script_name': environ.get('SCRIPT_NAME'),
            'path_info': environ.get('PATH_INFO'),
            'server_software': environ.get('SERVER_SOFTWARE'),
            'multithread': environ.get('wsgi.multithread'),
            'multiprocess': environ.get('wsgi.multiprocess'),
            'flup_file': sys.modules['flup'].__file__,
            'web_version': web.__version__,
            'debug': bool(web.config.get('debug')),
            'pid': os.getpid(),
            'threads': threading.active_count(),
        })


class Echo(object):
    def POST(self):
        body = web.data()
        return _json({'length': len(body), 'sha256': hashlib.sha256(body).hexdigest()})


class Sleep(object):
    def GET(self):
        seconds = min(float(web.input(seconds='1').seconds), MAX_SLEEP)
        time.sleep(seconds)
        web.header('Content-Type', 'text/plain; charset=utf-8')
        return 'slept %.2f s\n' % seconds


class Boom(object):
    def GET(self):
        raise RuntimeError('handler failed: %s' % SECRET_MARKER)


def boom_middleware(application):
    """Wrap the web.py WSGI function so /boom-wsgi raises before web.py runs."""
    def wrapped(environ, start_response):
        path = environ.get('REQUEST_URI', '').split('?')[0]
        if path.endswith('/boom-wsgi'):
            raise RuntimeError('middleware failed: %s' % SECRET_MARKER)
        return application(environ, start_response)
    return wrapped


app = web.application(urls, globals())

if __name__ == '__main__':
    # flup logs through the logging module; without a handler its start-up
    # line and application errors would not show.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s')
    app.run(boom_middleware)
