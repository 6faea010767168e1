"""CGI mode: flup.server.cgi and FCGI_FORCE_CGI=Y, run as real CGI processes.

Each test starts a Python process the way a web server starts a CGI
program: the request in the environment, the body on standard input and
the response read from standard output.
"""

from __future__ import absolute_import

import io
import os
import sys
import textwrap

import pytest

from flup.server import cgi
from tests.support.webservers import parse_cgi_response, run_command

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Body bytes that text-mode streams would mangle: NUL, CR LF, high bytes.
BINARY_BODY = b'a\x00b\r\nc\xff\xfe'

SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, %(root)r)

    def application(environ, start_response):
        if environ['PATH_INFO'] == '/raise':
            raise RuntimeError('boom-secret')
        body = environ['wsgi.input'].read()
        kind = type(body).__name__
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('X-Input-Type', kind)])
        return [body + b'|' + environ['REQUEST_METHOD'].encode('ascii')]

    if sys.argv[1] == 'cgi':
        from flup.server.cgi import WSGIServer
    else:
        from flup.server.fcgi import WSGIServer
    WSGIServer(application).run()
''')


@pytest.fixture
def cgi_script(tmp_path):
    path = str(tmp_path / 'app.cgi.py')
    with io.open(path, 'wb') as script:
        script.write((SCRIPT % {'root': REPO_ROOT}).encode('utf-8'))
    return path


def run_cgi(script, mode, method='POST', path='/', body=b'', extra_env=None):
    env = {
        'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
        'GATEWAY_INTERFACE': 'CGI/1.1',
        'REQUEST_METHOD': method,
        'SCRIPT_NAME': '/app.cgi',
        'PATH_INFO': path,
        'QUERY_STRING': '',
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'CONTENT_LENGTH': str(len(body)),
    }
    env.update(extra_env or {})
    returncode, stdout, stderr = run_command([sys.executable, script, mode],
                                             input_bytes=body, env=env, timeout=30)
    assert returncode == 0, stderr
    return stdout, stderr


@pytest.mark.parametrize('mode, extra_env', [
    ('cgi', {}),
    ('fcgi', {'FCGI_FORCE_CGI': 'Y'}),
])
def test_cgi_post_body_bytes_intact(cgi_script, mode, extra_env):
    stdout, _ = run_cgi(cgi_script, mode, body=b'abc', extra_env=extra_env)
    assert stdout.startswith(b'Status: 200')
    status, headers, body = parse_cgi_response(stdout)
    assert status == 200
    # The input is bytes: named str on Python 2.7.
    assert headers['x-input-type'] == ('bytes' if sys.version_info[0] >= 3 else 'str')
    assert body == b'abc|POST'
    stdout, _ = run_cgi(cgi_script, mode, body=BINARY_BODY, extra_env=extra_env)
    assert parse_cgi_response(stdout)[2] == BINARY_BODY + b'|POST'


@pytest.mark.parametrize('mode, extra_env', [
    ('cgi', {}),
    ('fcgi', {'FCGI_FORCE_CGI': 'Y'}),
])
def test_cgi_app_error_gives_500(cgi_script, mode, extra_env):
    stdout, stderr = run_cgi(cgi_script, mode, method='GET', path='/raise',
                             extra_env=extra_env)
    status, _, body = parse_cgi_response(stdout)
    assert status == 500
    assert b'boom-secret' not in body
    assert b'boom-secret' in stderr


def test_cgi_server_in_process_with_streams(monkeypatch):
    monkeypatch.setenv('REQUEST_METHOD', 'PUT')
    monkeypatch.setenv('CONTENT_LENGTH', '4')
    monkeypatch.setenv('PATH_INFO', '/x')
    stdin = io.BytesIO(b'datatrailing')
    stdout = io.BytesIO()
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response('201 Created', [('Content-Type', 'text/plain')])
        return [environ['wsgi.input'].read()]

    cgi.WSGIServer(app, stdin=stdin, stdout=stdout).run()
    status, _, body = parse_cgi_response(stdout.getvalue())
    assert status == 201
    assert body == b'data'
    assert seen['wsgi.run_once'] is True
    assert seen['wsgi.multithread'] is False
    assert seen['PATH_INFO'] == '/x'
