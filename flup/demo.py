"""A demo WSGI application that shows what the server received.

``application`` renders one HTML page with a form that uploads a file and
a note, the request method, SCRIPT_NAME, PATH_INFO, query string and body
size, the server's live counts (``environ['flup.stats']``, when the server
provides it) and the request headers.  After a form is submitted the page
lists each file's name and size and each text field's value.  It is what ``python -m flup`` serves when no application is named,
and what ``python -m flup.server.fcgi`` (or ``fcgi_fork``, ``fcgi_single``)
runs under a web server.
"""

from __future__ import absolute_import

import logging
import re
import sys

import six

from flup._compat import PY2

__all__ = ['application', 'main_for_module']

# Bodies larger than this are not read, and the response is 413 instead.
MAX_BODY_BYTES = 16 * 1024 * 1024

_READ_CHUNK = 65536

# Maximum length of a text field value shown on the page, in characters.
MAX_FIELD_DISPLAY_CHARS = 2000

# Each count of ServerStats.snapshot() with its label, in page order.
_STATS_LABELS = (
    ('connections', 'open connections'),
    ('active_requests', 'requests in progress'),
    ('requests', 'completed requests'),
    ('aborted_requests', 'aborted requests'),
    ('discarded_requests', 'discarded requests'),
    ('threads_in_use', 'busy pool threads'),
    ('threads', 'pool threads, busy and idle'),
)

# A parameter of Content-Type or Content-Disposition: name=token or
# name="quoted string" (RFC 7578 and RFC 2045).
_PARAM_RE = re.compile(
    r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


def escape_html(text):
    """Escape ``&``, ``<``, ``>``, ``"`` and ``'`` for HTML text and attributes."""
    return (text.replace('&', '&amp;').replace('<', '&lt;')
            .replace('>', '&gt;').replace('"', '&quot;')
            .replace("'", '&#x27;'))


def _display(value):
    """Return a native environ string as text, reading its bytes as UTF-8.

    PEP 3333 environ strings carry the raw bytes as ISO-8859-1 (or as bytes
    on Python 2); browsers send UTF-8.
    """
    if PY2:
        raw = value if isinstance(value, bytes) else value.encode('utf-8')
    else:
        raw = value.encode('latin-1', 'replace')
    return raw.decode('utf-8', 'replace')


def _parse_header_params(value):
    """Split ``value; a=b; c="d"`` into ('value', {'a': 'b', 'c': 'd'})."""
    main, _, _ = value.partition(';')
    params = {}
    for name, raw in _PARAM_RE.findall(value[len(main):]):
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r'\\(.)', r'\1', raw[1:-1])
        params[name.lower()] = raw
    return main.strip().lower(), params


def parse_multipart(body, boundary, include_text=False):
    """Parse a multipart/form-data body (bytes) into a list of parts.

    Each part is a dict with ``name``, ``filename`` (None for plain fields)
    and ``size`` (bytes of content).  With ``include_text``, a plain field
    also has ``text``, its content decoded as UTF-8.  Raise ValueError when
    the body does not follow the multipart syntax of RFC 2046, section 5.1.1.
    """
    if not boundary or len(boundary) > 70:
        raise ValueError('invalid multipart boundary %r' % (boundary,))
    delimiter = b'\r\n--' + boundary
    segments = (b'\r\n' + body).split(delimiter)
    if len(segments) < 2:
        raise ValueError('the body does not contain the boundary')
    parts = []
    for segment in segments[1:]:
        if segment.startswith(b'--'):
            return parts
        line_end = segment.find(b'\r\n')
        head_end = segment.find(b'\r\n\r\n', max(line_end, 0))
        if line_end < 0 or head_end < 0:
            raise ValueError('a multipart part has no header section')
        if line_end == head_end:
            headers, content = b'', segment[head_end + 4:]
        else:
            headers = segment[line_end + 2:head_end]
            content = segment[head_end + 4:]
        part = _describe_part(headers, content)
        if include_text and part['filename'] is None:
            part['text'] = content.decode('utf-8', 'replace')
        parts.append(part)
    raise ValueError('the body ends without the closing boundary')


def _describe_part(headers, content):
    disposition = ''
    for line in headers.split(b'\r\n'):
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-disposition':
            disposition = value.strip().decode('utf-8', 'replace')
    _, params = _parse_header_params(disposition)
    return {'name': params.get('name', ''),
            'filename': params.get('filename'),
            'size': len(content)}


def _read_body(environ, length):
    stream = environ['wsgi.input']
    chunks = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(_READ_CHUNK, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b''.join(chunks)


def _body_length(environ):
    try:
        return max(0, int(environ.get('CONTENT_LENGTH') or 0))
    except ValueError:
        return 0


def _request_headers(environ):
    headers = []
    for name in sorted(environ):
        if name.startswith('HTTP_'):
            label = name[5:].replace('_', '-').title()
        elif name in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            label = name.replace('_', '-').title()
        else:
            continue
        value = environ[name]
        if isinstance(value, six.string_types) and value != '':
            headers.append((label, _display(value)))
    return headers


def _table(rows):
    lines = ['<table>']
    for label, value in rows:
        lines.append('<tr><th>%s</th><td><code>%s</code></td></tr>'
                     % (escape_html(label), escape_html(value)))
    lines.append('</table>')
    return '\n'.join(lines)


def _upload_section(environ, body):
    content_type, params = _parse_header_params(
        _display(environ.get('CONTENT_TYPE', '')))
    if content_type != 'multipart/form-data':
        return ''
    boundary = params.get('boundary', '').encode('latin-1', 'replace')
    try:
        parts = parse_multipart(body, boundary, include_text=True)
    except ValueError as error:
        return ('<h2>Submitted form</h2>\n<p class="error">Invalid multipart '
                'body: %s</p>' % escape_html(str(error)))
    rows = []
    for part in parts:
        rows.append(('field %s' % part['name'], _describe_field(part)))
    if not rows:
        return '<h2>Submitted form</h2>\n<p>The form contained no field.</p>'
    return '<h2>Submitted form</h2>\n' + _table(rows)


def _describe_field(part):
    if part['filename'] is not None:
        filename = part['filename'] or '(no file chosen)'
        return '%s, %d bytes' % (filename, part['size'])
    text = part['text']
    if len(text) > MAX_FIELD_DISPLAY_CHARS:
        return '%s... (%d bytes, first %d characters shown)' % (
            text[:MAX_FIELD_DISPLAY_CHARS], part['size'],
            MAX_FIELD_DISPLAY_CHARS)
    return text


def _stats_section(environ):
    stats_function = environ.get('flup.stats')
    if not callable(stats_function):
        return ''
    stats = stats_function()
    rows = [(label, str(stats[name]))
            for name, label in _STATS_LABELS if name in stats]
    return ('<h2>Server counts</h2>\n' + _table(rows) + '\n<p>Counts of the '
            'process that served this request (a child process under the '
            'prefork model) since it started.  Completed requests include '
            'aborted ones.  Pool threads are 0 for the prefork and single '
            'models, which have no thread pool.</p>')


_PAGE = u"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>flup demo</title>
<style>
body { font-family: sans-serif; margin: 2em; }
th { text-align: left; padding-right: 1em; vertical-align: top; white-space: nowrap; }
.error { color: #a00; }
</style></head>
<body>
<h1>flup demo</h1>
<p>This page was produced by a WSGI application behind a flup server.</p>
<h2>Upload a file</h2>
<form method="post" enctype="multipart/form-data" action="%(action)s">
<p><input type="file" name="file"> <input type="text" name="note" \
placeholder="a note"> <button type="submit">Upload</button></p>
</form>
<p><a href="%(action)s?greeting=hello&amp;lang=en">Try a query string</a></p>
%(upload)s
<h2>Request</h2>
%(request)s
%(stats)s
<h2>Request headers</h2>
%(headers)s
</body></html>
"""


def application(environ, start_response):
    """Render the demo page for any method and path."""
    length = _body_length(environ)
    if length > MAX_BODY_BYTES:
        body = (u'Request body of %d bytes exceeds the demo limit of %d bytes.'
                u'\n' % (length, MAX_BODY_BYTES)).encode('utf-8')
        start_response('413 Request Entity Too Large', [
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Length', str(len(body)))])
        return [body]
    request_body = _read_body(environ, length)
    script_name = _display(environ.get('SCRIPT_NAME', ''))
    path_info = _display(environ.get('PATH_INFO', ''))
    request_rows = [
        ('method', _display(environ.get('REQUEST_METHOD', ''))),
        ('SCRIPT_NAME', script_name),
        ('PATH_INFO', path_info),
        ('query', _display(environ.get('QUERY_STRING', ''))),
        ('body size', '%d bytes' % len(request_body)),
    ]
    page = _PAGE % {
        'request': _table(request_rows),
        'upload': _upload_section(environ, request_body),
        'headers': _table(_request_headers(environ)),
        'stats': _stats_section(environ),
        'action': escape_html((script_name + path_info) or '/'),
    }
    body = page.encode('utf-8')
    start_response('200 OK', [('Content-Type', 'text/html; charset=utf-8'),
                              ('Content-Length', str(len(body)))])
    return [body]


def main_for_module(server_class):
    """Serve the demo with ``server_class`` on the socket passed as fd 0.

    The FastCGI front modules call this under ``__main__``.  When fd 0 is
    not a listening socket the server runs the demo once as CGI.  Log lines
    go to stderr, because stdout carries the CGI response.
    """
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    server_class(application, bindAddress=None).run()
