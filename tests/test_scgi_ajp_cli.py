"""``python -m flup --protocol scgi|ajp``: the command with the SCGI and AJP
servers, started in a subprocess and stopped with SIGTERM."""

from __future__ import absolute_import

import json
import socket

import pytest

from flup import _cli
from tests import gateway_wire as wire
from tests.support.servers import free_port
from tests.support.webservers import parse_cgi_response
from tests.test_cli import START_TIMEOUT, run_flup, wait_http, wait_listening  # noqa: F401

ECHO_APP = 'tests.support.apps:echo'


@pytest.mark.parametrize('model', ['threaded', 'prefork'])
def test_cli_scgi_serves_and_stops(run_flup, model):
    port = free_port()
    command = run_flup(['--protocol', 'scgi', '--model', model, '--bind',
                        '127.0.0.1:%d' % port, '--log-level', 'DEBUG', ECHO_APP],
                       cwd=_cli_repo_root())
    wait_listening(command, ('127.0.0.1', port))
    raw = wire.scgi_exchange(('127.0.0.1', port), wire.cgi_params('POST', '/c'), b'abc')
    status, _, body = parse_cgi_response(raw)
    assert status == 200
    assert json.loads(body.decode('utf-8'))['body_length'] == 3
    assert command.terminate()[0] == 0
    log_text = command.log_text()
    assert 'serving SCGI on 127.0.0.1:%d: %s model' % (port, model) in log_text
    assert 'flup.server.scgi_base' in log_text  # DEBUG lines pass --log-level


@pytest.mark.parametrize('model', ['threaded', 'prefork'])
def test_cli_ajp_serves_and_stops(run_flup, model):
    port = free_port()
    command = run_flup(['--protocol', 'ajp', '--model', model, '--bind',
                        '127.0.0.1:%d' % port])
    wait_listening(command, ('127.0.0.1', port))
    sock = wire.connect(('127.0.0.1', port))
    try:
        sock.sendall(wire.ajp_forward_request(uri='/demo'))
        response = wire.ajp_read_response(sock)
    finally:
        sock.close()
    assert response.status == 200
    assert command.terminate()[0] == 0
    assert 'serving AJP on 127.0.0.1:%d' % port in command.log_text()


def test_cli_scgi_http_front(run_flup):
    port, http_port = free_port(), free_port()
    command = run_flup(['--protocol', 'scgi', '--bind', '127.0.0.1:%d' % port,
                        '--http', str(http_port)])
    status, _, body = wait_http(command, 'http://127.0.0.1:%d/front' % http_port)
    assert status == 200
    assert b'/front' in body
    assert command.terminate()[0] == 0


@pytest.mark.parametrize('args, message', [
    (['--protocol', 'scgi', '--model', 'single'], '--model single applies to --protocol fcgi'),
    (['--protocol', 'ajp', '--multiplexed'], '--multiplexed applies to --protocol fcgi'),
    (['--protocol', 'ajp', '--http', '8080'], '--http is not available with --protocol ajp'),
    (['--protocol', 'http'], 'invalid choice'),
])
def test_cli_protocol_usage_errors(run_flup, args, message):
    command = run_flup(args)
    assert command.wait_exit(START_TIMEOUT) == 2
    assert message in command.log_text()


def test_cli_scgi_bind_in_use_exits_1(run_flup):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(('127.0.0.1', 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        command = run_flup(['--protocol', 'scgi', '--bind', '127.0.0.1:%d' % port])
        assert command.wait_exit(START_TIMEOUT) == 1
    finally:
        holder.close()
    assert 'cannot listen on 127.0.0.1:%d' % port in command.log_text()


def test_cli_default_bind_per_protocol():
    parser = _cli.build_parser()
    for protocol, expected in (('fcgi', 9000), ('scgi', 4000), ('ajp', 8009)):
        args = parser.parse_args(['--protocol', protocol])
        _cli._check_model_options(parser, args)
        assert args.bind == ('127.0.0.1', expected)


def test_cli_help_names_protocols():
    help_text = _cli.build_parser().format_help()
    assert '--protocol {fcgi,scgi,ajp}' in help_text
    assert 'FastCGI, SCGI or AJP' in help_text


def _cli_repo_root():
    # The echo app is imported as tests.support.apps from the repository root.
    from tests.support.servers import REPO_ROOT
    return REPO_ROOT
