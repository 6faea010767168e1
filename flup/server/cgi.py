"""Plain CGI gateway: run a WSGI application once per process.

The web server starts the program for each request with the request in
the environment and the body on standard input.  The response goes to
standard output.  Typical use in a CGI script::

    from flup.server.cgi import WSGIServer
    WSGIServer(application).run()

Input and output are binary on every Python version, so request and
response bodies pass through unchanged.
"""

from __future__ import absolute_import

import logging
import os
import sys
import traceback

from flup._compat import monotonic
from flup.server._gateway import BodyInput
from flup.server._wsgi import (
    Response, build_environ, content_length, error_page, format_cgi_headers,
    log_access, run_application)
from flup.server.fcgi_base import _binary_stream, _cgi_params

__all__ = ['WSGIServer']

log = logging.getLogger(__name__)


class WSGIServer(object):
    """Run ``application`` once as a CGI program.

    ``environ`` is a dict of extra keys copied into the WSGI environ;
    ``debug=True`` shows the traceback in the 500 page.  ``stdin``,
    ``stdout`` and ``stderr`` replace the process's standard streams (for
    tests and embedding); they must be binary files.
    """

    def __init__(self, application, environ=None, debug=False, stdin=None,
                 stdout=None, stderr=None):
        self.application = application
        self.environ = {} if environ is None else environ
        self.debug = debug
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr

    def run(self):
        """Serve the request in ``os.environ``; return None."""
        stdin = self._stdin or _binary_stream(sys.stdin)
        stdout = self._stdout or _binary_stream(sys.stdout)
        stderr = self._stderr or sys.stderr
        started = monotonic()
        params = _cgi_params(os.environ)
        body = BodyInput(stdin.read, content_length(params) or 0)
        environ = build_environ(params, self.environ, body, stderr,
                                multithread=False, multiprocess=True)
        environ['wsgi.run_once'] = True

        def send_headers(status, headers):
            stdout.write(format_cgi_headers(status, headers))

        def send_body(data, final):
            stdout.write(data)
            if final:
                stdout.flush()

        response = Response(send_headers, send_body)
        try:
            run_application(self.application, environ, response)
        except Exception:
            log.error('application error in CGI request', exc_info=True)
            _write_traceback(stderr)
            if not response.headers_sent:
                status, headers, page = error_page(self.debug, sys.exc_info())
                send_headers(status, headers)
                send_body(page, True)
        finally:
            stdout.flush()
            log_access(environ, response, started)


def _write_traceback(stream):
    """Write the current traceback to the web server's error log stream."""
    try:
        stream.write(traceback.format_exc())
        stream.flush()
    except (IOError, OSError, TypeError, ValueError):
        pass
