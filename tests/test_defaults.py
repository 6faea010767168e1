"""Defaults of the FastCGI servers, FLUP_MULTIPLEXED, and the wsgi.* flags of each model.

Upstream flup 1.0.2 defaulted to ``debug=True``, which sent tracebacks to
visitors.  Every FastCGI server here defaults to ``debug=False`` and
``multiplexed=False``.  FLUP_MULTIPLEXED in the environment overrides the
``multiplexed`` argument, so an application that always passes True (web.py
does) can be switched off at deployment.
"""

from __future__ import absolute_import, print_function

import inspect
import json
import logging

import pytest

from flup.server import fcgi, fcgi_base, fcgi_fork, fcgi_single
from tests import fcgi_wire
from tests.support.servers import ServerStartError

pytestmark = pytest.mark.defaults

SERVER_MODULES = {
    'threaded': fcgi,
    'prefork': fcgi_fork,
    'single': fcgi_single,
}
ACCEPTED_WORDS = ('1', '0', 'true', 'false', 'yes', 'no', 'on', 'off')

# The wsgi.multithread and wsgi.multiprocess values of each model.  PEP 3333
# defines them as whether another thread, or another process, may call the
# application at the same time.
MODEL_FLAGS = {
    'threaded': (True, False),
    'prefork': (False, True),
    'single': (False, False),
}


def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok\n']


@pytest.fixture
def make_server(request, monkeypatch):
    """Build the ``WSGIServer`` of a model without running it, and stop its thread pool afterwards."""
    monkeypatch.delenv('FLUP_MULTIPLEXED', raising=False)

    def build(model, *args, **keywords):
        server = SERVER_MODULES[model].WSGIServer(application, *args, **keywords)
        pool = getattr(server, '_threadPool', None)
        if pool is not None:
            # The threaded server starts minSpare pool threads when it is built.
            request.addfinalizer(lambda: pool.shutdown(timeout=5.0))
        return server

    return build


def default_of(function, name):
    """Return the default value of parameter ``name`` of ``function``."""
    try:
        parameters = inspect.signature(function).parameters
        return parameters[name].default
    except AttributeError:  # Python 2.7 has no inspect.signature
        spec = inspect.getargspec(function)
        names = spec.args[len(spec.args) - len(spec.defaults):]
        return dict(zip(names, spec.defaults))[name]


# -- defaults ------------------------------------------------------------------

@pytest.mark.parametrize('cls', [
    fcgi.WSGIServer, fcgi_fork.WSGIServer, fcgi_single.WSGIServer, fcgi_base.BaseFCGIServer,
], ids=['threaded', 'prefork', 'single', 'base'])
@pytest.mark.parametrize('name', ['debug', 'multiplexed'])
def test_signature_default_false(cls, name):
    assert default_of(cls.__init__, name) is False


@pytest.mark.parametrize('model', sorted(SERVER_MODULES))
def test_server_built_with_defaults(make_server, model):
    server = make_server(model)
    assert server.debug is False
    assert server.multiplexed is False
    assert server.capability[fcgi_base.FCGI_MPXS_CONNS] == 0


@pytest.mark.parametrize('model, multiplexed', [
    ('threaded', True),
    # The prefork and single models serve one request per connection, so
    # they ignore multiplexed=True.
    ('prefork', False),
    ('single', False),
])
def test_server_built_as_webpy_does(make_server, model, multiplexed):
    server = make_server(model, multiplexed=True, bindAddress=('127.0.0.1', 0), debug=False)
    assert server.debug is False
    assert server.multiplexed is multiplexed
    assert server.capability[fcgi_base.FCGI_MPXS_CONNS] == (1 if multiplexed else 0)


# -- FLUP_MULTIPLEXED ------------------------------------------------------------

@pytest.mark.parametrize('value, expected', [
    ('1', True), ('0', False),
    ('true', True), ('FALSE', False),
    ('Yes', True), ('nO', False),
    ('ON', True), ('off', False),
    (' on ', True),
])
def test_variable_overrides_argument(make_server, monkeypatch, value, expected):
    monkeypatch.setenv('FLUP_MULTIPLEXED', value)
    server = make_server('threaded', multiplexed=not expected)
    assert server.multiplexed is expected
    assert server.capability[fcgi_base.FCGI_MPXS_CONNS] == (1 if expected else 0)


@pytest.mark.parametrize('argument', [True, False])
@pytest.mark.parametrize('value', ['', '  '])
def test_empty_variable_leaves_argument(make_server, monkeypatch, argument, value):
    monkeypatch.setenv('FLUP_MULTIPLEXED', value)
    server = make_server('threaded', multiplexed=argument)
    assert server.multiplexed is argument


@pytest.mark.parametrize('model', sorted(SERVER_MODULES))
@pytest.mark.parametrize('value', ['bogus', '2', 'y'])
def test_invalid_variable_raises(make_server, monkeypatch, model, value):
    monkeypatch.setenv('FLUP_MULTIPLEXED', value)
    with pytest.raises(ValueError) as error:
        make_server(model)
    message = str(error.value)
    assert 'FLUP_MULTIPLEXED' in message
    assert repr(value) in message
    for word in ACCEPTED_WORDS:
        assert word in message.split(':', 1)[1].replace(',', ' ').split(), message


def test_invalid_variable_stops_startup(server_factory):
    with pytest.raises(ServerStartError) as error:
        server_factory('threaded', 'hello', env={'FLUP_MULTIPLEXED': 'bogus'})
    message = str(error.value)
    assert 'FLUP_MULTIPLEXED' in message
    assert "'bogus'" in message
    assert 'serving FastCGI on' not in message


def startup_lines(server):
    return [line for line in server.log_text().splitlines() if 'serving FastCGI on' in line]


@pytest.mark.parametrize('model, argument, value, expected', [
    ('threaded', False, None, 'multiplexing off (set by argument)'),
    ('threaded', True, None, 'multiplexing on (set by argument)'),
    ('threaded', True, '0', 'multiplexing off (set by FLUP_MULTIPLEXED)'),
    ('threaded', False, 'yes', 'multiplexing on (set by FLUP_MULTIPLEXED)'),
    ('prefork', False, None, 'multiplexing off (set by argument)'),
    ('single', False, None, 'multiplexing off (set by argument)'),
    ('prefork', False, 'Off', 'multiplexing off (set by FLUP_MULTIPLEXED)'),
    ('single', False, 'Off', 'multiplexing off (set by FLUP_MULTIPLEXED)'),
])
def test_startup_line_states_mode(server_factory, model, argument, value, expected):
    env = {'FLUP_MULTIPLEXED': value if value is not None else ''}
    server = server_factory(model, 'hello', multiplexed=argument, env=env)
    assert server.wait_for_log('serving FastCGI on')
    lines = startup_lines(server)
    assert len(lines) == 1, server.log_text()
    assert expected in lines[0]
    with fcgi_wire.Client(server.address) as client:
        values = client.get_values(['FCGI_MPXS_CONNS'])
    assert values['FCGI_MPXS_CONNS'] == ('1' if 'multiplexing on' in expected else '0')


@pytest.mark.parametrize('model', ['prefork', 'single'])
def test_one_request_models_report_mode_off(server_factory, model):
    # The variable requests multiplexing, which these models cannot do, so the
    # start-up line and FCGI_MPXS_CONNS must state the mode in effect.
    server = server_factory(model, 'hello', env={'FLUP_MULTIPLEXED': '1'})
    assert server.wait_for_log('serving FastCGI on')
    lines = startup_lines(server)
    assert len(lines) == 1, server.log_text()
    assert 'multiplexing off' in lines[0]
    with fcgi_wire.Client(server.address) as client:
        values = client.get_values(['FCGI_MPXS_CONNS'])
    assert values['FCGI_MPXS_CONNS'] == '0'


# -- wsgi.multithread and wsgi.multiprocess --------------------------------------

@pytest.mark.parametrize('model', sorted(MODEL_FLAGS))
@pytest.mark.parametrize('multiplexed', [False, True])
def test_wsgi_flags_match_model(server_factory, model, multiplexed):
    server = server_factory(model, 'wsgi_flags', multiplexed=multiplexed, env={'FLUP_MULTIPLEXED': ''})
    with fcgi_wire.Client(server.address) as client:
        response = client.request(fcgi_wire.cgi_params(path='/flags'))
    assert response.status == 200, response.stdout
    flags = json.loads(response.body.decode('utf-8'))
    multithread, multiprocess = MODEL_FLAGS[model]
    assert flags['wsgi.multithread'] is multithread
    assert flags['wsgi.multiprocess'] is multiprocess
    assert flags['wsgi.run_once'] is False


def test_debug_false_sends_generic_page(server_factory):
    server = server_factory('threaded', 'raise')
    with fcgi_wire.Client(server.address) as client:
        response = client.request(fcgi_wire.cgi_params(path='/raise'))
    assert response.status == 500
    assert b'boom-secret' not in response.body
    assert b'Traceback' not in response.body
    assert server.wait_for_log('boom-secret')


def test_no_handler_attached_at_import():
    # The start-up line goes through the logging module; flup adds only a
    # NullHandler, so the application chooses where it appears.
    handlers = logging.getLogger('flup').handlers
    assert all(isinstance(handler, logging.NullHandler) for handler in handlers)
