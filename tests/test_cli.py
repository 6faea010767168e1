"""Tests of ``python -m flup`` and of the demo the server modules run.

Each test starts the command in a subprocess of its own session (so prefork
children can be found and killed), talks to it over loopback HTTP or
FastCGI, and stops it with SIGTERM.
"""

from __future__ import absolute_import

import io
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
from six.moves import http_client

from tests import fcgi_wire
from tests.support import procinfo
from tests.support.servers import (
    REPO_ROOT, free_port, kill_session, unix_socket_path)
from tests.support.webservers import http_get, http_post

from flup import _cli

MODELS = ('threaded', 'prefork', 'single')
START_TIMEOUT = 15.0  # seconds for the command to accept connections
STOP_TIMEOUT = 5.0  # seconds the command may take to exit after SIGTERM

TEST_APP = '''
def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'custom app saw ' + environ['PATH_INFO'].encode('latin-1')]
'''

LAUNCHER = '''
import sys
sys.path.insert(0, %r)
from flup.__main__ import main
sys.exit(main())
''' % REPO_ROOT


class FlupCommand(object):
    """``flup`` run through a launcher script, as the console script runs it.

    The launcher lives in its own folder, so the only way the command finds
    a module in ``cwd`` is its own sys.path handling.
    """

    def __init__(self, python, workdir, args, cwd=None):
        self.workdir = workdir
        launcher = os.path.join(workdir, 'launcher', 'flup_launcher.py')
        if not os.path.isdir(os.path.dirname(launcher)):
            os.makedirs(os.path.dirname(launcher))
        with open(launcher, 'w') as handle:
            handle.write(LAUNCHER)
        self.log_path = os.path.join(workdir, 'flup-command.log')
        self.argv = [python, launcher] + list(args)
        env = dict(os.environ)
        env.pop('PYTHONPATH', None)
        env.pop('FLUP_MULTIPLEXED', None)
        with io.open(self.log_path, 'ab') as log_file:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=log_file,
                stderr=log_file, cwd=cwd or workdir, env=env,
                preexec_fn=os.setsid, close_fds=True)
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.sid = self.process.pid

    def log_text(self):
        with io.open(self.log_path, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')

    def wait_exit(self, timeout):
        """Return the exit status, or None if still running after ``timeout``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.process.poll()
            if status is not None:
                return status
            time.sleep(0.02)
        return self.process.poll()

    def terminate(self):
        """Send SIGTERM; return (exit status or None, seconds taken)."""
        started = time.time()
        self.process.send_signal(signal.SIGTERM)
        status = self.wait_exit(STOP_TIMEOUT)
        return status, time.time() - started

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        kill_session(self.sid)


@pytest.fixture
def run_flup(request, workdir, server_python):
    """Start ``flup ARGS``; everything it started is killed after the test."""
    started = []

    def start(args, **options):
        folder = os.path.join(workdir, 'flup%d' % (len(started) + 1))
        os.makedirs(folder)
        command = FlupCommand(server_python, folder, args, **options)
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()


def wait_http(command, url):
    """GET ``url`` until the server responds; return (status, headers, body)."""
    deadline = time.time() + START_TIMEOUT
    last_error = None
    while time.time() < deadline:
        if command.process.poll() is not None:
            break
        try:
            return http_get(url, timeout=5)
        except (socket.error, OSError) as error:
            last_error = error
            time.sleep(0.05)
    raise AssertionError('%s did not respond (exit status %s, last error %r); '
                         'log:\n%s' % (url, command.process.poll(), last_error,
                                       command.log_text()))


def wait_listening(command, address):
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if command.process.poll() is not None:
            break
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.connect(address)
            return
        except socket.error:
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError('nothing listens on %r (exit status %s); log:\n%s'
                         % (address, command.process.poll(), command.log_text()))


def multipart(boundary, filename, content):
    return (b'--' + boundary + b'\r\n'
            b'Content-Disposition: form-data; name="note"\r\n\r\n'
            b'a note\r\n'
            b'--' + boundary + b'\r\n'
            b'Content-Disposition: form-data; name="file"; filename="'
            + filename + b'"\r\n'
            b'Content-Type: application/octet-stream\r\n\r\n'
            + content + b'\r\n'
            b'--' + boundary + b'--\r\n')


# --help.

def test_help_documents_every_option(server_python):
    output = subprocess.check_output(
        [server_python, '-m', 'flup', '--help'], cwd=REPO_ROOT)
    text = ' '.join(output.decode('utf-8').split())
    for action in _cli.build_parser()._actions:
        for option in action.option_strings:
            assert option in text
    assert text.startswith('usage: python -m flup [options]')
    assert 'flup [options] [MODULE:CALLABLE]' in text
    assert 'python -m flup or as the installed flup command' in text
    epilog = _cli.build_parser().epilog
    assert 'SIGHUP stops it the same way, then re-executes the process' in epilog
    for option in ('--bind', '--model', '--multiplexed', '--umask',
                   '--min-spare', '--max-spare', '--max-threads',
                   '--max-children', '--max-requests', '--read-timeout',
                   '--grace-period', '--log-level', '--http', '--http-host',
                   '--debug'):
        assert option in text


def test_help_gives_default_for_every_option():
    for action in _cli.build_parser()._actions:
        if action.dest in ('help', 'version'):
            continue
        assert '(default' in action.help, action.dest


@pytest.mark.parametrize('option, unit', [
    ('--read-timeout', 'seconds'),
    ('--grace-period', 'seconds'),
    ('--umask', 'octal'),
    ('--http', 'port'),
    ('--max-requests', 'connections'),
    ('--max-threads', 'threads'),
    ('--max-children', 'child processes'),
])
def test_help_states_units(option, unit):
    for action in _cli.build_parser()._actions:
        if option in action.option_strings:
            assert unit in action.help
            return
    raise AssertionError('%s is not an option' % option)


# Serving the demo through the HTTP front.

@pytest.mark.parametrize('model', MODELS)
def test_demo_through_http_front(run_flup, model):
    fcgi_port = free_port()
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % fcgi_port,
                        '--http', str(http_port), '--model', model])
    base = 'http://127.0.0.1:%d' % http_port
    status, headers, body = wait_http(command, base + '/first/page?x=1&y=%3Cb%3E')
    assert status == 200
    assert headers['content-type'] == 'text/html; charset=utf-8'
    assert b'<code>GET</code>' in body
    assert b'<code>/first/page</code>' in body
    assert b'<code>x=1&amp;y=%3Cb%3E</code>' in body

    content = os.urandom(100000)
    boundary = b'----flupTestBoundary7MA4YWxk'
    status, _, body = http_post(
        base + '/upload', multipart(boundary, b'upload.bin', content),
        headers={'Content-Type': 'multipart/form-data; boundary='
                                 + boundary.decode('ascii')})
    assert status == 200
    assert b'<code>POST</code>' in body
    assert b'upload.bin, 100000 bytes' in body
    # The text field is shown too.
    assert b'<tr><th>field note</th><td><code>a note</code></td></tr>' in body

    log_text = command.log_text()
    assert ('serving FastCGI on 127.0.0.1:%d: %s model' % (fcgi_port, model)
            in log_text)
    assert log_text.count('serving FastCGI on') == 1
    assert 'open http://127.0.0.1:%d/' % http_port in log_text

    exit_status, seconds = command.terminate()
    assert exit_status == 0, command.log_text()
    assert seconds < STOP_TIMEOUT
    assert procinfo.session_pids(command.sid) == []


@pytest.mark.parametrize('model', MODELS)
def test_sigint_exits_cleanly(run_flup, model):
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port), '--model', model])
    wait_http(command, 'http://127.0.0.1:%d/' % http_port)
    started = time.time()
    command.process.send_signal(signal.SIGINT)
    assert command.wait_exit(STOP_TIMEOUT) == 0, command.log_text()
    assert time.time() - started < STOP_TIMEOUT
    assert 'Traceback' not in command.log_text()


def test_demo_shows_request_headers_escaped(run_flup):
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port)])
    url = 'http://127.0.0.1:%d/' % http_port
    wait_http(command, url)
    status, _, body = http_get(url, headers={'X-Demo': '<script>x</script>'})
    assert status == 200
    assert b'X-Demo' in body
    assert b'&lt;script&gt;x&lt;/script&gt;' in body
    assert b'<script>' not in body


def test_demo_shows_server_counts(run_flup):
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port)])
    _, _, body = wait_http(command, 'http://127.0.0.1:%d/' % http_port)
    for name in (b'open connections', b'requests in progress',
                 b'busy pool threads', b'pool threads, busy and idle',
                 b'completed requests', b'aborted requests',
                 b'discarded requests'):
        assert b'<th>' + name + b'</th>' in body
    assert b'Completed requests include aborted ones.' in body


def test_demo_page_puts_form_first():
    status, body = call_demo(demo_environ())
    form = body.index(b'<form ')
    assert form < body.index(b'<h2>Request</h2>')
    assert form < body.index(b'<h2>Request headers</h2>')


def chunk(data):
    return ('%x' % len(data)).encode('ascii') + b'\r\n' + data + b'\r\n'


def raw_http(port, head, body_parts=(), timeout=10.0):
    """Send ``head`` and then each of ``body_parts``; return the whole response."""
    connection = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    try:
        connection.sendall(head)
        for part in body_parts:
            connection.sendall(part)
        received = []
        while True:
            data = connection.recv(65536)
            if not data:
                break
            received.append(data)
        return b''.join(received)
    finally:
        connection.close()


@pytest.fixture
def demo_front(run_flup):
    """The demo behind the HTTP front; return (command, HTTP port)."""
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port)])
    wait_http(command, 'http://127.0.0.1:%d/' % http_port)
    return command, http_port


def test_http_front_decodes_chunked_body(demo_front):
    command, http_port = demo_front
    content = os.urandom(200000)
    boundary = b'chunkedBoundary'
    body = multipart(boundary, b'chunked.bin', content)
    pieces = [body[i:i + 70000] for i in range(0, len(body), 70000)]
    head = (b'POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Content-Type: multipart/form-data; boundary=' + boundary + b'\r\n'
            b'Transfer-Encoding: chunked\r\n\r\n')
    response = raw_http(http_port, head,
                        [chunk(piece) for piece in pieces] + [b'0\r\n\r\n'])
    assert response.startswith(b'HTTP/1.0 200 '), response[:300]
    assert ('<code>%d bytes</code>' % len(body)).encode('ascii') in response
    assert b'chunked.bin, 200000 bytes' in response
    assert b'<code>a note</code>' in response
    # The application sees a plain body with a Content-Length.
    assert b'Transfer-Encoding' not in response.split(b'\r\n\r\n', 1)[1]


@pytest.mark.parametrize('chunks, message', [
    ([b'zz\r\n'], b'invalid chunk size'),
    ([b'5\r\nabc'], b'connection closed inside a chunk'),
    ([b'3\r\nabcXY0\r\n\r\n'], b'not followed by CRLF'),
])
def test_http_front_rejects_bad_chunking(demo_front, chunks, message):
    command, http_port = demo_front
    head = (b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Transfer-Encoding: chunked\r\n\r\n')
    connection = socket.create_connection(('127.0.0.1', http_port), timeout=10)
    try:
        connection.sendall(head + b''.join(chunks))
        # Half-close, so a truncated chunk ends instead of waiting for data.
        connection.shutdown(socket.SHUT_WR)
        response = connection.makefile('rb').read()
    finally:
        connection.close()
    assert response.startswith(b'HTTP/1.0 400 '), response[:300]
    assert message in response


def test_http_front_rejects_content_length_with_chunked(demo_front):
    command, http_port = demo_front
    head = (b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n'
            b'Transfer-Encoding: chunked\r\n\r\n')
    response = raw_http(http_port, head, [b'3\r\nabc\r\n0\r\n\r\n'])
    assert response.startswith(b'HTTP/1.0 400 '), response[:300]


def test_http_front_sends_100_continue(demo_front):
    command, http_port = demo_front
    body = b'x' * 5000
    connection = socket.create_connection(('127.0.0.1', http_port), timeout=10)
    try:
        connection.sendall(b'POST /expect HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                           b'Content-Length: %d\r\n'
                           b'Expect: 100-continue\r\n\r\n' % len(body))
        # curl waits up to 1 s for this line before it sends the body anyway.
        connection.settimeout(0.5)
        interim = connection.recv(25)
        assert interim == b'HTTP/1.1 100 Continue\r\n\r\n'
        connection.settimeout(10)
        connection.sendall(body)
        response = connection.makefile('rb').read()
    finally:
        connection.close()
    assert response.startswith(b'HTTP/1.0 200 '), response[:300]
    assert b'<code>5000 bytes</code>' in response
    assert b'Expect' not in response.split(b'<h2>Request headers</h2>', 1)[1]


def test_decode_chunked_limits_size():
    from flup import _devhttp
    stream = io.BytesIO(chunk(b'a' * 10) + chunk(b'b' * 10) + b'0\r\n\r\n')
    with pytest.raises(_devhttp.BodyError) as caught:
        _devhttp.decode_chunked(stream, io.BytesIO(), max_bytes=15)
    assert caught.value.status == 413


def test_decode_chunked_reads_extensions_and_trailers():
    from flup import _devhttp
    stream = io.BytesIO(b'4;name=value\r\nwiki\r\n5\r\npedia\r\n'
                        b'0\r\nX-Trailer: 1\r\n\r\nnext request')
    output = io.BytesIO()
    assert _devhttp.decode_chunked(stream, output) == 9
    assert output.getvalue() == b'wikipedia'
    assert stream.read() == b'next request'


def test_http_front_rejects_large_chunked_body():
    from flup._devhttp import DevHTTPServer
    import flup._devhttp as devhttp

    def application(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [environ['wsgi.input'].read()]

    front = DevHTTPServer(application, '127.0.0.1', 0)
    saved = devhttp.MAX_CHUNKED_BODY_BYTES
    devhttp.MAX_CHUNKED_BODY_BYTES = 1000
    try:
        front.start()
        head = (b'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                b'Transfer-Encoding: chunked\r\n\r\n')
        small = raw_http(front.port, head, [chunk(b'z' * 600), b'0\r\n\r\n'])
        large = raw_http(front.port, head, [chunk(b'z' * 600), chunk(b'z' * 600),
                                            b'0\r\n\r\n'])
    finally:
        devhttp.MAX_CHUNKED_BODY_BYTES = saved
        front.stop()
    assert small.startswith(b'HTTP/1.0 200 ')
    assert small.endswith(b'z' * 600)
    assert large.startswith(b'HTTP/1.0 413 '), large[:300]


def test_unix_socket_bind_with_umask(run_flup, workdir):
    path = unix_socket_path(workdir, 'cli.sock')
    http_port = free_port()
    command = run_flup(['--bind', 'unix:' + path, '--umask', '077',
                        '--http', str(http_port)])
    status, _, body = wait_http(command, 'http://127.0.0.1:%d/over/unix'
                                % http_port)
    assert status == 200
    assert b'<code>/over/unix</code>' in body
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert 'serving FastCGI on unix:%s' % path in command.log_text()
    exit_status, _ = command.terminate()
    assert exit_status == 0
    assert not os.path.exists(path)


def test_ipv6_bind(run_flup):
    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        probe.bind(('::1', 0))
    except socket.error:
        pytest.skip('no IPv6 loopback on this machine')
    finally:
        probe.close()
    fcgi_port = free_port('::1')
    http_port = free_port()
    command = run_flup(['--bind', '[::1]:%d' % fcgi_port,
                        '--http', str(http_port)])
    status, _, _ = wait_http(command, 'http://127.0.0.1:%d/' % http_port)
    assert status == 200
    assert 'serving FastCGI on [::1]:%d' % fcgi_port in command.log_text()


def test_sighup_restarts_server(run_flup):
    http_port = free_port()
    command = run_flup(['--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port)])
    url = 'http://127.0.0.1:%d/after' % http_port
    wait_http(command, url)
    command.process.send_signal(signal.SIGHUP)
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if command.log_text().count('serving FastCGI on') == 2:
            break
        time.sleep(0.05)
    assert command.log_text().count('serving FastCGI on') == 2
    status, _, _ = wait_http(command, url)
    assert status == 200
    exit_status, _ = command.terminate()
    assert exit_status == 0


VERSIONED_APP = '''
def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'version %d']
'''


def write_versioned_app(folder, version):
    """Write cli_reload_app.py returning ``version N``; drop stale bytecode."""
    path = os.path.join(folder, 'cli_reload_app.py')
    with open(path, 'w') as handle:
        handle.write(VERSIONED_APP % version)
    # Python 2.7 checks only the source's mtime in seconds, so a .pyc from
    # the same second would be reused.
    for stale in ('cli_reload_app.pyc', '__pycache__'):
        stale_path = os.path.join(folder, stale)
        if os.path.isdir(stale_path):
            shutil.rmtree(stale_path)
        elif os.path.exists(stale_path):
            os.remove(stale_path)


def wait_body(command, url, expected):
    """GET ``url`` until the body is ``expected``; return the last body."""
    deadline = time.time() + START_TIMEOUT
    body = None
    while time.time() < deadline and command.process.poll() is None:
        try:
            _, _, body = http_get(url, timeout=5)
        except (socket.error, OSError, http_client.HTTPException):
            # The HTTP front goes away while the process re-executes.
            body = None
        if body == expected:
            break
        time.sleep(0.05)
    return body


@pytest.mark.parametrize('model', MODELS)
def test_sighup_reimports_application(run_flup, workdir, model):
    app_dir = os.path.join(workdir, 'reload-project')
    os.makedirs(app_dir)
    write_versioned_app(app_dir, 1)
    http_port = free_port()
    command = run_flup(['cli_reload_app:app', '--model', model,
                        '--bind', '127.0.0.1:%d' % free_port(),
                        '--http', str(http_port)], cwd=app_dir)
    url = 'http://127.0.0.1:%d/' % http_port
    status, _, body = wait_http(command, url)
    assert status == 200
    assert body == b'version 1'

    write_versioned_app(app_dir, 2)
    command.process.send_signal(signal.SIGHUP)
    assert wait_body(command, url, b'version 2') == b'version 2', \
        command.log_text()
    log_text = command.log_text()
    assert log_text.count('SIGHUP received: re-executing') == 1
    assert 'cli_reload_app:app --model %s' % model in log_text
    # os.execv keeps the process id, so a supervisor still tracks it.
    assert command.process.poll() is None
    exit_status, _ = command.terminate()
    assert exit_status == 0, command.log_text()
    assert procinfo.session_pids(command.sid) == []


def test_reexec_argv_repeats_command():
    argv = _cli.reexec_argv()
    assert argv[0] == sys.executable
    # pytest's own arguments end the command line in every form.
    arguments = sys.argv[1:]
    assert argv[len(argv) - len(arguments):] == arguments


# MODULE:CALLABLE.

def test_serves_module_callable_from_cwd(run_flup, workdir):
    app_dir = os.path.join(workdir, 'project')
    os.makedirs(app_dir)
    with open(os.path.join(app_dir, 'cli_test_app.py'), 'w') as handle:
        handle.write(TEST_APP)
    port = free_port()
    command = run_flup(['cli_test_app:app', '--bind', '127.0.0.1:%d' % port,
                        '--model', 'single'], cwd=app_dir)
    wait_listening(command, ('127.0.0.1', port))
    with fcgi_wire.Client(('127.0.0.1', port)) as client:
        response = client.request(fcgi_wire.cgi_params(path='/from/fcgi'))
    assert response.status == 200
    assert response.body == b'custom app saw /from/fcgi'
    exit_status, _ = command.terminate()
    assert exit_status == 0


def test_missing_module_is_a_usage_error(run_flup):
    command = run_flup(['no_such_module_for_flup:app'])
    assert command.wait_exit(START_TIMEOUT) == 2
    assert "cannot import module 'no_such_module_for_flup'" in command.log_text()


# Invalid options.

@pytest.mark.parametrize('args, message', [
    (['--bind', 'localhost'], 'invalid bind address'),
    (['--bind', '127.0.0.1:70000'], 'invalid port'),
    (['--model', 'prefork', '--max-threads', '4'], '--max-threads applies'),
    (['--model', 'single', '--min-spare', '2'], '--min-spare applies'),
    (['--model', 'prefork', '--multiplexed'], '--multiplexed applies'),
    (['--umask', '999'], 'invalid umask'),
    (['--read-timeout', '0'], 'invalid duration'),
    (['--log-level', 'loud'], 'invalid log level'),
    (['--model', 'prefork', '--min-spare', '10'], 'invalid combination'),
])
def test_invalid_option_is_rejected(run_flup, args, message):
    command = run_flup(args)
    assert command.wait_exit(START_TIMEOUT) == 2
    assert message in command.log_text()


def test_bind_address_in_use_exits_1(run_flup):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(('127.0.0.1', 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        command = run_flup(['--bind', '127.0.0.1:%d' % port])
        assert command.wait_exit(START_TIMEOUT) == 1
    finally:
        holder.close()
    assert re.search(r'cannot listen on 127\.0\.0\.1:%d: .*in use' % port,
                     command.log_text())


def test_parse_bind_forms():
    assert _cli.parse_bind('127.0.0.1:9000') == ('127.0.0.1', 9000)
    assert _cli.parse_bind('[::1]:9000') == ('::1', 9000)
    assert _cli.parse_bind('unix:/run/app.sock') == '/run/app.sock'
    assert _cli.parse_bind('/run/app.sock') == '/run/app.sock'
    assert _cli.parse_bind('./app.sock') == './app.sock'


def test_client_address_uses_loopback_for_wildcards():
    assert _cli.client_address(('0.0.0.0', 9000)) == ('127.0.0.1', 9000)
    assert _cli.client_address(('::', 9000)) == ('::1', 9000)
    assert _cli.client_address('/run/app.sock') == '/run/app.sock'


# The server modules' own demo, run as CGI when fd 0 is not a socket.

@pytest.mark.parametrize('module', ['flup.server.fcgi', 'flup.server.fcgi_fork',
                                    'flup.server.fcgi_single'])
def test_module_demo_runs_as_cgi(server_python, module):
    env = dict(os.environ, QUERY_STRING='from=cgi', REQUEST_METHOD='GET',
               PATH_INFO='/cgi/path')
    env.pop('PYTHONPATH', None)
    with open(os.devnull, 'rb') as stdin:
        process = subprocess.Popen(
            [server_python, '-m', module], stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
            env=env)
        output, errors = process.communicate()
    assert process.returncode == 0, errors
    assert output.startswith(b'Status: 200'), (output[:300], errors)
    assert b'<code>/cgi/path</code>' in output
    assert b'<code>from=cgi</code>' in output


def test_module_demo_cgi_post_upload(server_python):
    content = b'\x00\x01binary\r\n' * 50
    boundary = b'cgiBoundary'
    body = multipart(boundary, b'cgi.bin', content)
    env = dict(os.environ, REQUEST_METHOD='POST', CONTENT_LENGTH=str(len(body)),
               CONTENT_TYPE='multipart/form-data; boundary=cgiBoundary')
    env.pop('PYTHONPATH', None)
    process = subprocess.Popen(
        [server_python, '-m', 'flup.server.fcgi'], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env)
    output, errors = process.communicate(body)
    assert output.startswith(b'Status: 200'), (output[:300], errors)
    assert ('cgi.bin, %d bytes' % len(content)).encode('ascii') in output


# The demo application called directly.

def call_demo(environ):
    from flup import demo
    captured = []
    body = b''.join(demo.application(
        environ, lambda status, headers: captured.append(status)))
    return captured[0], body


def demo_environ(**extra):
    environ = {'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '/app',
               'PATH_INFO': '/page', 'QUERY_STRING': '',
               'wsgi.input': io.BytesIO(b'')}
    environ.update(extra)
    return environ


def test_demo_decodes_utf8_header():
    raw = u'caf\xe9 <b>'.encode('utf-8')
    value = raw if sys.version_info[0] == 2 else raw.decode('latin-1')
    status, body = call_demo(demo_environ(HTTP_X_NAME=value))
    assert status == '200 OK'
    assert u'caf\xe9 &lt;b&gt;'.encode('utf-8') in body


def test_demo_shows_script_name():
    status, body = call_demo(demo_environ())
    assert b'<tr><th>SCRIPT_NAME</th><td><code>/app</code></td></tr>' in body
    assert b'action="/app/page"' in body


def test_demo_rejects_oversized_body():
    from flup import demo
    status, _ = call_demo(demo_environ(
        REQUEST_METHOD='POST', CONTENT_LENGTH=str(demo.MAX_BODY_BYTES + 1)))
    assert status == '413 Request Entity Too Large'


def test_demo_reports_invalid_multipart():
    body = b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nno end'
    status, page = call_demo(demo_environ(
        REQUEST_METHOD='POST', CONTENT_LENGTH=str(len(body)),
        CONTENT_TYPE='multipart/form-data; boundary=b',
        **{'wsgi.input': io.BytesIO(body)}))
    assert status == '200 OK'
    assert b'Invalid multipart body' in page


def test_parse_multipart_quoted_boundary_and_names():
    from flup import demo
    body = multipart(b'q b', b'na\\"me.txt', b'12345')
    content_type, params = demo._parse_header_params(
        'multipart/form-data; boundary="q b"')
    assert content_type == 'multipart/form-data'
    assert params['boundary'] == 'q b'
    parts = demo.parse_multipart(body, b'q b')
    assert parts[0] == {'name': 'note', 'filename': None, 'size': 6}
    assert parts[1] == {'name': 'file', 'filename': 'na"me.txt', 'size': 5}
