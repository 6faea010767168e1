"""FastCGI servers as separate processes: binding, environment variables,
signals, the CGI fallback and start-up checks, for every process model."""

from __future__ import absolute_import

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from . import fcgi_wire as wire
from .support import procinfo
from .support.servers import REPO_ROOT, SERVE_SCRIPT

MODELS = ['threaded', 'prefork', 'single']


def get(path='/'):
    return wire.cgi_params(method='GET', path=path)


@pytest.mark.parametrize('model', MODELS)
@pytest.mark.parametrize('bind', ['fd0', 'fd0-unix', 'tcp6', 'unix'])
def test_serves_on_every_binding(server_factory, model, bind):
    server = server_factory(model, 'hello', bind=bind)
    with wire.Client(server.address) as client:
        response = client.request(get())
    assert response.status == 200
    assert server.stop()
    assert server.exited_cleanly


@pytest.mark.parametrize('model', MODELS)
def test_sighup_makes_run_return_true(server_factory, model):
    server = server_factory(model, 'hello')
    server.send_signal(signal.SIGHUP)
    assert procinfo.wait_until(lambda: not server.is_running(), 10.0)
    assert 'run() returned True' in server.log_text()


@pytest.mark.parametrize('model', MODELS)
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_make_run_return_false(server_factory, model, signum):
    server = server_factory(model, 'hello')
    with wire.Client(server.address) as client:
        assert client.request(get()).status == 200
    server.send_signal(signum)
    assert procinfo.wait_until(lambda: not server.is_running(), 10.0)
    assert 'run() returned False' in server.log_text()


def test_web_server_addrs_filters_tcp_peers(server_factory):
    server = server_factory('threaded', 'hello',
                            env={'FCGI_WEB_SERVER_ADDRS': '127.0.0.2, ::1'})
    with wire.Client(server.address) as client:
        client.send(wire.begin(1) + wire.params(1, get()) + wire.stdin(1, b''))
        records = client.recv_records(timeout=5.0)
    assert records == []
    assert 'FCGI_WEB_SERVER_ADDRS' in server.log_text()


def test_web_server_addrs_allows_listed_peer(server_factory):
    server = server_factory('threaded', 'hello',
                            env={'FCGI_WEB_SERVER_ADDRS': '10.0.0.1,127.0.0.1'})
    with wire.Client(server.address) as client:
        assert client.request(get()).status == 200


@pytest.mark.parametrize('model', MODELS)
def test_web_server_addrs_ignores_unix_peers(server_factory, model):
    server = server_factory(model, 'hello', bind='unix',
                            env={'FCGI_WEB_SERVER_ADDRS': '127.0.0.1'})
    with wire.Client(server.address) as client:
        assert client.request(get()).status == 200


def test_web_server_addrs_ipv6(server_factory):
    server = server_factory('threaded', 'hello', bind='tcp6',
                            env={'FCGI_WEB_SERVER_ADDRS': '0:0:0:0:0:0:0:1'})
    with wire.Client(server.address) as client:
        assert client.request(get()).status == 200


def run_cgi(model, body, extra_env=None, stdin_is_socket=False):
    """Run serve.py as a CGI program and return (status, stdout, stderr)."""
    environ = dict(os.environ)
    environ.pop('PYTHONPATH', None)
    environ.update({
        'REQUEST_METHOD': 'POST',
        'CONTENT_LENGTH': str(len(body)),
        'CONTENT_TYPE': 'application/octet-stream',
        'SCRIPT_NAME': '/cgi-bin/app',
        'PATH_INFO': '/echo',
        'QUERY_STRING': '',
        'SERVER_NAME': 'localhost',
        'SERVER_PORT': '80',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'GATEWAY_INTERFACE': 'CGI/1.1',
    })
    environ.update(extra_env or {})
    bind = '127.0.0.1:1' if 'FCGI_FORCE_CGI' in environ else 'fd0'
    process = subprocess.Popen(
        [sys.executable, SERVE_SCRIPT, '--model', model, '--bind', bind,
         '--app', 'echo'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=environ, cwd=REPO_ROOT)
    out, err = process.communicate(body, timeout=30) if sys.version_info[0] >= 3 \
        else process.communicate(body)
    return process.returncode, out, err


@pytest.mark.parametrize('model', MODELS)
def test_force_cgi_reads_and_writes_bytes(model):
    body = b'a\x00\xff'
    status, out, err = run_cgi(model, body, {'FCGI_FORCE_CGI': 'Y'})
    assert status == 0, err
    assert out.startswith(b'Status: 200'), out
    assert b'"body_length": 3' in out
    import hashlib
    assert hashlib.sha1(body).hexdigest().encode('ascii') in out


@pytest.mark.parametrize('model', MODELS)
def test_stdin_not_a_socket_falls_back_to_cgi(model):
    status, out, err = run_cgi(model, b'xyz')
    assert status == 0, err
    assert out.startswith(b'Status: 200'), out
    assert b'"body_length": 3' in out


def test_module_demo_runs_as_cgi():
    environ = dict(os.environ, REQUEST_METHOD='GET', SCRIPT_NAME='',
                   PATH_INFO='/', QUERY_STRING='', SERVER_NAME='localhost',
                   SERVER_PORT='80', SERVER_PROTOCOL='HTTP/1.1')
    environ['PYTHONPATH'] = REPO_ROOT
    for module in ('flup.server.fcgi', 'flup.server.fcgi_single',
                   'flup.server.fcgi_fork'):
        process = subprocess.Popen(
            [sys.executable, '-m', module], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
        out, err = process.communicate(b'')
        assert process.returncode == 0, err
        assert out.startswith(b'Status: 200'), (module, out[:200], err[-2000:])


@pytest.mark.parametrize('model', MODELS)
def test_no_deprecated_api_in_use(server_factory, model):
    server = server_factory(model, 'hello', multiplexed=(model == 'threaded'),
                            env={'PYTHONWARNINGS': 'error'})
    for request_id in (1, 2):
        with wire.Client(server.address) as client:
            assert client.request(get(), request_id=request_id).status == 200
    assert server.stop()
    assert server.exited_cleanly, server.log_text()
    assert 'Warning' not in server.log_text()


def test_start_up_line_names_mode_and_pool(server_factory):
    server = server_factory('threaded', 'hello', multiplexed=True,
                            kw={'maxThreads': 7})
    text = server.log_text()
    assert 'threaded model' in text
    assert 'up to 7 threads' in text
    assert 'multiplexing on (set by argument)' in text


@pytest.mark.parametrize('model', ['prefork', 'single'])
def test_multiplexed_ignored_with_one_line(server_factory, model):
    server = server_factory(model, 'hello', multiplexed=True)
    with wire.Client(server.address) as client:
        values = client.get_values([wire.MPXS_CONNS])
    assert values[wire.MPXS_CONNS] == '0'
    assert server.log_text().count('multiplexed=True is ignored') == 1


def test_bind_error_is_reported(server_factory):
    holder = socket.socket()
    holder.bind(('127.0.0.1', 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        process = subprocess.Popen(
            [sys.executable, SERVE_SCRIPT, '--model', 'threaded', '--bind',
             '127.0.0.1:%d' % port, '--app', 'hello'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
        out, err = process.communicate()
    finally:
        holder.close()
    assert process.returncode != 0
    assert b'Address already in use' in err


@pytest.mark.parametrize('model', MODELS)
def test_sigterm_with_stuck_application_returns(server_factory, model):
    grace = 1.0
    server = server_factory(model, 'sleep', kw={'gracePeriod': grace})
    client = wire.Client(server.address)
    try:
        params = wire.cgi_params(method='GET', query='t=60')
        client.send(wire.begin(1) + wire.params(1, params) + wire.stdin(1, b''))
        # Give the server time to start the application.
        time.sleep(0.5)
        started = time.time()
        server.send_signal(signal.SIGTERM)
        stopped = procinfo.wait_until(lambda: not server.is_running(),
                                      grace + 8.0)
        elapsed = time.time() - started
    finally:
        client.close()
    assert stopped, server.log_text()
    assert elapsed < grace + 8.0
    assert 'run() returned False' in server.log_text()


def test_fork_timeout_ends_long_request(server_factory):
    server = server_factory('prefork', 'sleep', kw={'timeout': 1})
    params = wire.cgi_params(method='GET', query='t=30')
    started = time.time()
    with wire.Client(server.address, timeout=15.0) as client:
        response = client.request(params)
    assert time.time() - started < 10.0
    assert response.status == 500
    assert 'TimeoutException' in server.log_text()
    with wire.Client(server.address) as client:
        assert client.request(wire.cgi_params(query='t=0')).status == 200
