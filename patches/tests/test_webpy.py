"""Tests of how web.py's ``web.wsgi`` starts flup, for ``patches/web.py-0.76``.

They import ``web`` from the folder that ``WEBPY_TEST_TARGET`` names (web.py
0.76 installed with its dependencies, with or without the patch series)
and replace flup and web.py's built-in HTTP server with recording
stand-ins, so no server starts and no socket opens.  web.py 0.76 needs
Python 3.10 or later.
"""

from __future__ import absolute_import

import os
import sys
import types

import pytest

TARGET = os.environ.get('WEBPY_TEST_TARGET')
if not TARGET:
    pytest.skip('WEBPY_TEST_TARGET is not set: these tests only run against '
                'an installed web.py tree', allow_module_level=True)

TARGET = os.path.realpath(TARGET)
sys.path.insert(0, TARGET)
import web  # noqa: E402
import web.httpserver  # noqa: E402
import web.wsgi  # noqa: E402

if not os.path.realpath(web.__file__).startswith(TARGET + os.sep):
    raise ImportError('web was imported from %s, not from WEBPY_TEST_TARGET=%s; '
                      'remove the other web.py from sys.path'
                      % (web.__file__, TARGET))

# Variables that make runwsgi choose FastCGI, CGI or a port by themselves.
CONTEXT_VARIABLES = ('SERVER_SOFTWARE', 'GATEWAY_INTERFACE', 'PHP_FCGI_CHILDREN',
                     'FCGI_FORCE_CGI', 'PORT')


def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok\n']


class RecordingServer(object):
    """Stand-in for flup.server.fcgi.WSGIServer that records its arguments."""

    calls = []

    def __init__(self, application, **keywords):
        RecordingServer.calls.append(keywords)

    def run(self):
        return False


@pytest.fixture
def fake_flup(monkeypatch):
    """Make ``import flup.server.fcgi`` return a module with RecordingServer."""
    RecordingServer.calls = []
    flup = types.ModuleType('flup')
    server = types.ModuleType('flup.server')
    fcgi = types.ModuleType('flup.server.fcgi')
    fcgi.WSGIServer = RecordingServer
    flup.server = server
    server.fcgi = fcgi
    monkeypatch.setitem(sys.modules, 'flup', flup)
    monkeypatch.setitem(sys.modules, 'flup.server', server)
    monkeypatch.setitem(sys.modules, 'flup.server.fcgi', fcgi)
    return RecordingServer


@pytest.fixture
def launches(monkeypatch):
    """Record which server runwsgi starts, in a clean process context."""
    for name in CONTEXT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, 'argv', ['app.py'])
    started = []
    monkeypatch.setattr(web.wsgi, 'runfcgi',
                        lambda func, addr=None: started.append(('fcgi', addr)))
    monkeypatch.setattr(web.httpserver, 'runsimple',
                        lambda func, addr=None: started.append(('http', addr)))
    yield started
    # runwsgi sets FCGI_FORCE_CGI in os.environ itself, behind monkeypatch.
    os.environ.pop('FCGI_FORCE_CGI', None)


def test_runfcgi_not_multiplexed(fake_flup):
    """runfcgi leaves multiplexed to flup's default."""
    web.wsgi.runfcgi(application, ('127.0.0.1', 9000))

    assert len(fake_flup.calls) == 1
    keywords = fake_flup.calls[0]
    assert keywords.get('multiplexed', False) is False, 'runfcgi passed %r' % (keywords,)
    assert keywords['bindAddress'] == ('127.0.0.1', 9000)


def test_runwsgi_server_software_not_cgi(monkeypatch, launches):
    """SERVER_SOFTWARE inherited from an HTTP server does not mean CGI."""
    monkeypatch.setenv('SERVER_SOFTWARE', 'gunicorn/23.0.0')

    web.wsgi.runwsgi(application)

    assert [kind for kind, _ in launches] == ['http']
    assert 'FCGI_FORCE_CGI' not in os.environ


def test_runwsgi_cgi_context(monkeypatch, launches):
    """GATEWAY_INTERFACE=CGI/1.1 still runs the application once as CGI."""
    monkeypatch.setenv('GATEWAY_INTERFACE', 'CGI/1.1')
    monkeypatch.setenv('SERVER_SOFTWARE', 'Apache/2.4.62')

    web.wsgi.runwsgi(application)

    assert launches == [('fcgi', None)]
    assert os.environ.get('FCGI_FORCE_CGI') == 'Y'


def test_runwsgi_fastcgi_argument(monkeypatch, launches):
    """``app.py fastcgi HOST:PORT`` still starts FastCGI on that address."""
    monkeypatch.setattr(sys, 'argv', ['app.py', 'fastcgi', '127.0.0.1:9001'])

    web.wsgi.runwsgi(application)

    assert launches == [('fcgi', ('127.0.0.1', 9001))]
