"""The WSGI side of every flup server: environ, start_response and the body.

FastCGI, SCGI, AJP and CGI differ only in how a request arrives and how the
response leaves.  Each builds its environ with :func:`build_environ` and
runs the application through :func:`run_application` with a
:class:`Response` wired to its own output functions.  PEP 3333 applies on
Python 3 and PEP 333 on 2.7: environ values and header strings are native
strings, bodies are bytes.

WSGI contract errors raise TypeError, ValueError or AssertionError
explicitly, so they are reported under ``python -O`` as well.
"""

from __future__ import absolute_import

import logging
import re
import sys
import traceback

import six

from flup._compat import PY2, from_native, monotonic, reraise

if PY2:
    from urllib import quote as _quote
    from urllib import unquote as _unquote
else:
    from urllib.parse import quote as _quote
    from urllib.parse import unquote_to_bytes as _unquote_to_bytes

access_log = logging.getLogger('flup.access')

_STATUS_RE = re.compile(r'^[0-9]{3} ')
_BODYLESS_STATUSES = ('1', '204', '304')


def _unquote_native(text):
    if PY2:
        return _unquote(text)
    return _unquote_to_bytes(text).decode('latin-1')


def derive_path_info(script_name, request_uri):
    """Return the PATH_INFO a request URI implies, given SCRIPT_NAME.

    When SCRIPT_NAME is a prefix of the path on a segment boundary, the rest
    of the path is PATH_INFO; otherwise (a rewrite in front of the
    application) the whole path is.
    """
    path = _unquote_native(request_uri.split('?', 1)[0])
    if script_name and path.startswith(script_name):
        rest = path[len(script_name):]
        if not rest or rest.startswith('/') or script_name.endswith('/'):
            return rest
    return path


def build_environ(params, base_environ=None, input_stream=None,
                  error_stream=None, multithread=True, multiprocess=False,
                  extra=None):
    """Build a WSGI environ from CGI-style request variables.

    ``params`` maps native strings to native strings.  ``base_environ`` is
    copied first (the server's ``environ`` keyword) and ``extra`` last.  The
    function has no side effects, so protocols can share and test it.
    """
    environ = dict(base_environ or ())
    environ.update(params)

    environ.setdefault('REQUEST_METHOD', 'GET')
    environ.setdefault('SCRIPT_NAME', '')
    environ.setdefault('QUERY_STRING', '')
    environ.setdefault('SERVER_PROTOCOL', 'HTTP/1.0')
    environ.setdefault('SERVER_NAME', 'localhost')
    environ.setdefault('SERVER_PORT', '80')
    if not environ.get('PATH_INFO') and environ.get('REQUEST_URI'):
        environ['PATH_INFO'] = derive_path_info(
            environ['SCRIPT_NAME'], environ['REQUEST_URI'])
    environ.setdefault('PATH_INFO', '')

    https = environ.get('HTTPS', '').lower() in ('on', '1', 'yes', 'true')
    if https or environ.get('REQUEST_SCHEME', '').lower() == 'https':
        scheme = 'https'
    else:
        scheme = 'http'

    environ['wsgi.version'] = (1, 0)
    environ['wsgi.url_scheme'] = scheme
    environ['wsgi.input'] = input_stream
    environ['wsgi.errors'] = error_stream
    environ['wsgi.multithread'] = bool(multithread)
    environ['wsgi.multiprocess'] = bool(multiprocess)
    environ['wsgi.run_once'] = False
    if extra:
        environ.update(extra)
    return environ


def content_length(environ):
    """Return CONTENT_LENGTH as an int, or None when absent or invalid."""
    value = environ.get('CONTENT_LENGTH', '')
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _header_text(value, what):
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        # Upstream flup accepted bytes here on Python 3; keep that working.
        text = value.decode('latin-1')
    else:
        raise TypeError('%s must be a str, not %s' % (what, type(value).__name__))
    if '\r' in text or '\n' in text:
        raise ValueError('%s contains a line break: %r' % (what, text))
    return text


def format_cgi_headers(status, headers):
    """Encode a status and header list as a CGI response head."""
    lines = ['Status: %s\r\n' % status]
    lines.extend('%s: %s\r\n' % (name, value) for name, value in headers)
    lines.append('\r\n')
    return from_native(''.join(lines))


class Response(object):
    """``start_response`` and ``write`` for one request.

    ``send_headers(status, headers)`` is called once, just before the first
    body bytes; ``send_body(data, final)`` for each piece of the body, with
    ``final`` True on the last piece when that is known.  Both receive
    native strings and bytes; the protocol encodes them.  ``disconnected``
    returns True once the client is gone; output is dropped from then on.
    """

    def __init__(self, send_headers, send_body, disconnected=None):
        self._send_headers = send_headers
        self._send_body = send_body
        self._disconnected = disconnected or (lambda: False)
        self.status = None
        self.headers = None
        self.headers_sent = False
        self.finished = False
        self.bytes_sent = 0

    def start_response(self, status, response_headers, exc_info=None):
        if exc_info:
            try:
                if self.headers_sent:
                    reraise(*exc_info)
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError(
                'start_response() was called a second time without exc_info')

        status = _header_text(status, 'status')
        if not _STATUS_RE.match(status):
            raise ValueError(
                'status must be a 3-digit code, a space and a reason, not %r'
                % status)
        if not isinstance(response_headers, (list, tuple)):
            raise TypeError('response headers must be a list, not %s'
                            % type(response_headers).__name__)
        headers = []
        for item in response_headers:
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError('each response header must be a (name, value) '
                                'tuple, not %r' % (item,))
            name = _header_text(item[0], 'header name')
            value = _header_text(item[1], 'value of header %r' % name)
            headers.append((name, value))
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data):
        """Send ``data`` (bytes) as part of the body: the WSGI write()."""
        self._write(data, False)

    def _write(self, data, final):
        if self.status is None:
            raise AssertionError('write() was called before start_response()')
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError('response body must be bytes, not %s'
                            % type(data).__name__)
        if self._disconnected():
            return
        if not self.headers_sent:
            self.headers_sent = True
            self._send_headers(self.status, self.headers)
        if data or final:
            self.bytes_sent += len(data)
            self.finished = final
            self._send_body(bytes(data), final)

    def add_content_length(self, length, environ):
        """Add Content-Length for a body of known length, if allowed."""
        if self.headers_sent or self.status is None:
            return
        if environ.get('REQUEST_METHOD') == 'HEAD':
            return
        if self.status.startswith(_BODYLESS_STATUSES):
            return
        for name, _ in self.headers:
            if name.lower() == 'content-length':
                return
        self.headers.append(('Content-Length', str(length)))

    def finish(self):
        """Send the headers if no body was sent, and end the body."""
        if self.status is None:
            raise AssertionError(
                'the application returned without calling start_response()')
        if not self.finished:
            self._write(b'', True)


def run_application(application, environ, response):
    """Call a WSGI application and send its result through ``response``.

    The result's ``close()`` is always called.  Iteration stops early once
    the client is gone.  Exceptions from the application propagate to the
    caller, which decides between an error page and a quiet end.
    """
    result = application(environ, response.start_response)
    try:
        if isinstance(result, (list, tuple)):
            if len(result) == 1:
                response.add_content_length(len(result[0]), environ)
            last = len(result) - 1
            for index, chunk in enumerate(result):
                if response._disconnected():
                    break
                response._write(chunk, index == last)
        else:
            for chunk in result:
                response._write(chunk, False)
                if response._disconnected():
                    break
        if not response._disconnected():
            response.finish()
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            close()


class LineReader(object):
    """``readlines`` and line iteration for an input stream with ``readline``."""

    def readlines(self, hint=None):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint and hint > 0 and total >= hint:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    next = __next__  # Python 2.7


def log_access(environ, response, started):
    """Write one line for a finished request to the ``flup.access`` logger."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    status = response.status.split(' ', 1)[0] if response.status else '-'
    path = environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', '')
    # Percent-encode the decoded path again, so that a space or a control
    # character in it cannot split or forge the line.
    if not PY2:
        path = path.encode('latin-1', 'replace')
    access_log.info('%s %s %s %d %.3f',
                    environ.get('REQUEST_METHOD', '-'),
                    _quote(path, safe="/;:@&=+$,~!*'()") or '/',
                    status, response.bytes_sent, monotonic() - started)


_GENERIC_ERROR_PAGE = b"""<!DOCTYPE html>
<html><head><title>500 Internal Server Error</title></head>
<body><h1>Internal Server Error</h1>
<p>The server could not complete the request because of an error in the
application. The error has been logged.</p>
</body></html>
"""


def _escape_html(text):
    return (text.replace('&', '&amp;').replace('<', '&lt;')
            .replace('>', '&gt;').replace('"', '&quot;'))


def error_page(debug, exc_info=None):
    """Return ``(status, headers, body)`` for an application error.

    With ``debug`` the page shows the traceback, HTML-escaped; without it the
    page is generic and names nothing from the application.
    """
    if not debug:
        body = _GENERIC_ERROR_PAGE
    else:
        if exc_info is None:
            exc_info = sys.exc_info()
        text = ''.join(traceback.format_exception(*exc_info))
        if PY2 and isinstance(text, six.text_type):
            text = text.encode('utf-8', 'replace')
        html = ('<!DOCTYPE html>\n<html><head><title>500 Internal Server Error'
                '</title></head>\n<body><h1>Internal Server Error</h1>\n'
                '<p>The application raised an exception:</p>\n<pre>%s</pre>\n'
                '</body></html>\n' % _escape_html(text))
        body = html.encode('utf-8') if not PY2 else html
    headers = [('Content-Type', 'text/html; charset=utf-8'),
               ('Content-Length', str(len(body)))]
    return '500 Internal Server Error', headers, body
