"""WSGI applications that the test servers run, looked up by name.

Every application is plain WSGI with byte-string bodies and runs on Python
2.7 and 3.x, so the same names work with this project and with upstream
flup.  ``serve.py --app NAME`` picks one through ``get_app(NAME)``.
"""

from __future__ import absolute_import, print_function

import hashlib
import json
import logging
import time

from six.moves.urllib.parse import parse_qs

log = logging.getLogger('flup_tests.apps')

# Request headers that ``echo`` reports, as WSGI environ keys.
ECHO_HEADERS = (
    'CONTENT_TYPE',
    'CONTENT_LENGTH',
    'HTTP_HOST',
    'HTTP_USER_AGENT',
    'HTTP_X_TEST',
    'REQUEST_URI',
    'SERVER_NAME',
    'SERVER_PORT',
    'SERVER_PROTOCOL',
)

READ_CHUNK_SIZE = 8192


def _query_value(environ, name, default, convert):
    values = parse_qs(environ.get('QUERY_STRING', '')).get(name)
    if not values:
        return default
    return convert(values[0])


def _content_length(environ):
    try:
        return max(int(environ.get('CONTENT_LENGTH') or 0), 0)
    except ValueError:
        return 0


def _json_response(start_response, status, document):
    body = json.dumps(document, sort_keys=True).encode('utf-8')
    start_response(
        status,
        [
            ('Content-Type', 'application/json'),
            ('Content-Length', str(len(body))),
        ],
    )
    return [body]


def _text_response(start_response, status, text):
    body = text.encode('utf-8')
    start_response(
        status,
        [
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Length', str(len(body))),
        ],
    )
    return [body]


def _read_body(environ):
    """Read CONTENT_LENGTH bytes of ``wsgi.input`` in chunks; return bytes."""
    remaining = _content_length(environ)
    stream = environ['wsgi.input']
    chunks = []
    while remaining > 0:
        chunk = stream.read(min(READ_CHUNK_SIZE, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b''.join(chunks)


def hello(environ, start_response):
    return _text_response(start_response, '200 OK', u'Hello, world!\n')


def echo(environ, start_response):
    """Report the request line, selected headers and a digest of the body."""
    body = _read_body(environ)
    headers = dict((key, environ[key]) for key in ECHO_HEADERS if key in environ)
    document = {
        'method': environ.get('REQUEST_METHOD'),
        'path': environ.get('SCRIPT_NAME', '') + environ.get('PATH_INFO', ''),
        'SCRIPT_NAME': environ.get('SCRIPT_NAME'),
        'PATH_INFO': environ.get('PATH_INFO'),
        'QUERY_STRING': environ.get('QUERY_STRING'),
        'headers': headers,
        'body_length': len(body),
        'body_sha1': hashlib.sha1(body).hexdigest(),
    }
    return _json_response(start_response, '200 OK', document)


def sleep(environ, start_response):
    """Sleep ``?t=`` seconds (default 0.3), then return 200."""
    seconds = _query_value(environ, 't', 0.3, float)
    time.sleep(seconds)
    return _text_response(start_response, '200 OK', u'slept %s\n' % seconds)


def stream(environ, start_response):
    """Yield ``?n=`` chunks of ``?size=`` bytes (default 40 x 65536)."""
    count = _query_value(environ, 'n', 40, int)
    size = _query_value(environ, 'size', 65536, int)
    start_response(
        '200 OK',
        [
            ('Content-Type', 'application/octet-stream'),
            ('Content-Length', str(count * size)),
        ],
    )

    def generate():
        chunk = b'x' * size
        for _ in range(count):
            yield chunk

    return generate()


def read_body(environ, start_response):
    """Read ``wsgi.input`` to the end and report the byte count.

    An IOError or OSError from the stream (for example when the web server
    hangs up mid-body) is logged and turned into a 400 naming the exception
    class, so tests can tell a clean read from a failed one.
    """
    stream = environ['wsgi.input']
    total = 0
    try:
        while True:
            chunk = stream.read(READ_CHUNK_SIZE)
            if not chunk:
                break
            total += len(chunk)
    except (IOError, OSError) as exc:
        log.warning(
            'read_body: reading wsgi.input failed after %d bytes: %r', total, exc
        )
        return _text_response(
            start_response, '400 Bad Request', u'%s\n' % type(exc).__name__
        )
    return _text_response(start_response, '200 OK', u'%d\n' % total)


def raise_error(environ, start_response):
    """Raise RuntimeError; the message must never reach the HTTP client."""
    raise RuntimeError('boom-secret')


def env(environ, start_response):
    """Return every environ entry whose value is a native string, as JSON."""
    document = {}
    for key, value in environ.items():
        if isinstance(value, str):
            document[key] = value
    return _json_response(start_response, '200 OK', document)


def wsgi_flags(environ, start_response):
    """Return wsgi.multithread, wsgi.multiprocess and wsgi.run_once as JSON."""
    names = ('wsgi.multithread', 'wsgi.multiprocess', 'wsgi.run_once')
    return _json_response(
        start_response, '200 OK', dict((name, environ.get(name)) for name in names)
    )


def slow_body(environ, start_response):
    """Read the body one byte every 10 ms, then report the byte count."""
    remaining = _content_length(environ)
    stream = environ['wsgi.input']
    total = 0
    while remaining > 0:
        chunk = stream.read(1)
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
        time.sleep(0.01)
    return _text_response(start_response, '200 OK', u'%d\n' % total)


APPS = {
    'hello': hello,
    'echo': echo,
    'sleep': sleep,
    'stream': stream,
    'read_body': read_body,
    'raise': raise_error,
    'env': env,
    'slow_body': slow_body,
    'wsgi_flags': wsgi_flags,
}


def get_app(name):
    """Return the application registered as ``name``; raise KeyError if unknown."""
    try:
        return APPS[name]
    except KeyError:
        raise KeyError(
            'unknown test app %r; expected one of: %s' % (name, ', '.join(sorted(APPS)))
        )
