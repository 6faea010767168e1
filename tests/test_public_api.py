"""The import paths, names, keywords and defaults that upstream programs use."""

from __future__ import absolute_import

import importlib
import inspect
import sys

import pytest

PUBLIC_NAMES = {
    'flup.server': ['NoDefault', 'ClientDisconnected'],
    'flup.server.fcgi': ['WSGIServer'],
    'flup.server.fcgi_fork': ['WSGIServer'],
    'flup.server.fcgi_single': ['WSGIServer'],
    'flup.server.fcgi_base': [
        'BaseFCGIServer', 'Connection', 'MultiplexedConnection', 'Request',
        'CGIRequest', 'Record', 'InputStream', 'MultiplexedInputStream',
        'OutputStream', 'TeeOutputStream', 'StdoutWrapper', 'encode_pair',
        'decode_pair', 'TimeoutException',
        'FCGI_BEGIN_REQUEST', 'FCGI_ABORT_REQUEST', 'FCGI_END_REQUEST',
        'FCGI_PARAMS', 'FCGI_STDIN', 'FCGI_STDOUT', 'FCGI_STDERR', 'FCGI_DATA',
        'FCGI_GET_VALUES', 'FCGI_GET_VALUES_RESULT', 'FCGI_UNKNOWN_TYPE',
        'FCGI_RESPONDER', 'FCGI_AUTHORIZER', 'FCGI_FILTER',
        'FCGI_REQUEST_COMPLETE', 'FCGI_CANT_MPX_CONN', 'FCGI_OVERLOADED',
        'FCGI_UNKNOWN_ROLE', 'FCGI_KEEP_CONN', 'FCGI_MAX_CONNS',
        'FCGI_MAX_REQS', 'FCGI_MPXS_CONNS'],
    'flup.server.threadedserver': ['ThreadedServer'],
    'flup.server.preforkserver': ['PreforkServer'],
    'flup.server.singleserver': ['SingleServer'],
    'flup.server.threadpool': ['ThreadPool'],
    'flup.client.fcgi_app': ['FCGIApp'],
}

# FastCGI 1.0 section 8.
CONSTANT_VALUES = {
    'FCGI_BEGIN_REQUEST': 1, 'FCGI_ABORT_REQUEST': 2, 'FCGI_END_REQUEST': 3,
    'FCGI_PARAMS': 4, 'FCGI_STDIN': 5, 'FCGI_STDOUT': 6, 'FCGI_STDERR': 7,
    'FCGI_DATA': 8, 'FCGI_GET_VALUES': 9, 'FCGI_GET_VALUES_RESULT': 10,
    'FCGI_UNKNOWN_TYPE': 11, 'FCGI_RESPONDER': 1, 'FCGI_AUTHORIZER': 2,
    'FCGI_FILTER': 3, 'FCGI_REQUEST_COMPLETE': 0, 'FCGI_CANT_MPX_CONN': 1,
    'FCGI_OVERLOADED': 2, 'FCGI_UNKNOWN_ROLE': 3, 'FCGI_KEEP_CONN': 1,
    'FCGI_MAX_CONNS': 'FCGI_MAX_CONNS', 'FCGI_MAX_REQS': 'FCGI_MAX_REQS',
    'FCGI_MPXS_CONNS': 'FCGI_MPXS_CONNS',
}


def signature_defaults(function):
    if sys.version_info[0] >= 3:
        parameters = inspect.signature(function).parameters
        return dict((name, p.default) for name, p in parameters.items()
                    if p.default is not inspect.Parameter.empty)
    spec = inspect.getargspec(function)
    names = spec.args[len(spec.args) - len(spec.defaults or ()):]
    return dict(zip(names, spec.defaults or ()))


@pytest.mark.parametrize('module_name', sorted(PUBLIC_NAMES))
def test_module_exports_public_names(module_name):
    module = importlib.import_module(module_name)
    missing = [name for name in PUBLIC_NAMES[module_name]
               if not hasattr(module, name)]
    assert missing == []


def test_fcgi_constants_have_spec_values():
    from flup.server import fcgi_base
    for name, value in CONSTANT_VALUES.items():
        assert getattr(fcgi_base, name) == value, name


def test_client_disconnected_is_ioerror():
    from flup.server import ClientDisconnected
    from flup.server.fcgi_base import ClientDisconnected as reexported
    assert issubclass(ClientDisconnected, IOError)
    assert reexported is ClientDisconnected


def test_threaded_fcgi_keywords_and_defaults():
    from flup.server.fcgi import WSGIServer
    from flup.server.fcgi_base import FCGI_RESPONDER
    defaults = signature_defaults(WSGIServer.__init__)
    assert defaults['environ'] is None
    assert defaults['multithreaded'] is True
    assert defaults['multiprocess'] is False
    assert defaults['bindAddress'] is None
    assert defaults['umask'] is None
    assert defaults['multiplexed'] is False
    assert defaults['debug'] is False
    assert defaults['roles'] == (FCGI_RESPONDER,)
    assert defaults['forceCGI'] is False
    assert defaults['readTimeout'] == 60.0
    assert defaults['gracePeriod'] == 5.0


def test_fork_fcgi_keywords_and_defaults():
    from flup.server.fcgi_fork import WSGIServer
    defaults = signature_defaults(WSGIServer.__init__)
    assert defaults['timeout'] is None
    assert defaults['debug'] is False
    assert defaults['multiplexed'] is False


def test_positional_arguments_keep_upstream_order():
    from flup.server.fcgi import WSGIServer

    def app(environ, start_response):
        return []

    server = WSGIServer(app, {'k': 'v'}, False, True, ('127.0.0.1', 0), None,
                        False, True)
    assert server.environ == {'k': 'v'}
    assert server.multithreaded is False
    assert server.multiprocess is True
    assert server.debug is True


def test_process_model_defaults():
    from flup.server.preforkserver import PreforkServer
    from flup.server.threadpool import ThreadPool
    prefork = signature_defaults(PreforkServer.__init__)
    assert prefork['minSpare'] == 1
    assert prefork['maxSpare'] == 5
    assert prefork['maxChildren'] == 50
    assert prefork['maxRequests'] == 0
    assert prefork['sockTimeout'] == 0
    pool = signature_defaults(ThreadPool.__init__)
    assert pool['minSpare'] == 1
    assert pool['maxSpare'] == 5
    # The one deliberate change: a finite default instead of sys.maxsize.
    assert 0 < pool['maxThreads'] < sys.maxsize


def test_thread_pool_add_job_returns_bool():
    import threading
    from flup.server.threadpool import ThreadPool
    done = threading.Event()

    class Job(object):
        def run(self):
            done.set()

    pool = ThreadPool(minSpare=1, maxSpare=1, maxThreads=1)
    assert pool.addJob(Job(), allowQueuing=True) is True
    assert done.wait(5)
    assert pool.shutdown(timeout=5) is True


def test_fcgi_app_signature():
    from flup.client.fcgi_app import FCGIApp
    defaults = signature_defaults(FCGIApp.__init__)
    upstream = {'command': None, 'connect': None, 'host': None, 'port': None,
                'filterEnviron': True}
    # Keywords the fork adds come after upstream's and have defaults.
    assert dict((k, defaults[k]) for k in upstream) == upstream


def test_record_public_attributes():
    from flup.server.fcgi_base import FCGI_STDOUT, Record
    record = Record(FCGI_STDOUT, 3)
    assert record.version == 1
    assert record.type == FCGI_STDOUT
    assert record.requestId == 3
    assert record.contentLength == 0
    assert record.paddingLength == 0
    assert record.contentData == b''


def test_pair_helpers_round_trip():
    from flup.server.fcgi_base import decode_pair, encode_pair
    data = encode_pair(b'NAME', b'v' * 300)
    assert decode_pair(data) == (len(data), (b'NAME', b'v' * 300))


def test_package_logger_has_null_handler_only():
    import logging
    import flup
    handlers = logging.getLogger('flup').handlers
    assert [type(h).__name__ for h in handlers] == ['NullHandler']
    assert flup.__version__ > '1.0.3'
