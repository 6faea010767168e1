"""Tests of the sans-IO FastCGI codec in ``flup.server._fcgi_protocol``.

Input bytes come from ``fcgi_wire``, an encoder written apart from the
package, and the package's output is decoded with ``fcgi_wire`` too, so the
codec is never checked against itself.  A corpus of record streams is
replayed whole, byte by byte and in seeded random chunks, and Hypothesis
checks round trips and that arbitrary input raises only ProtocolError.
"""

from __future__ import absolute_import

import collections
import errno
import os
import random
import shutil
import socket
import struct
import tempfile
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flup.server import _fcgi_protocol as fcgi
from tests import fcgi_wire as wire

ProtocolError = fcgi.ProtocolError

# Hypothesis 4.x (for Python 2.7) and 6.x both accept these settings.
HYPOTHESIS_SETTINGS = settings(
    max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])

ALL_ROLES = (fcgi.FCGI_RESPONDER, fcgi.FCGI_AUTHORIZER, fcgi.FCGI_FILTER)

GET_PARAMS = [
    (b'REQUEST_METHOD', b'GET'),
    (b'SCRIPT_NAME', b''),
    (b'PATH_INFO', b'/hello'),
    (b'QUERY_STRING', b'a=1&b=2'),
    (b'SERVER_NAME', b'localhost'),
    (b'SERVER_PORT', b'80'),
    (b'SERVER_PROTOCOL', b'HTTP/1.1'),
    (b'HTTP_HOST', b'localhost'),
]


def started(request_id, params=GET_PARAMS, role=fcgi.FCGI_RESPONDER,
            keep_conn=False):
    return fcgi.RequestStarted(request_id, role, keep_conn, list(params))


def rejected(request_id, protocol_status, keep_conn=False):
    # The reason text is free-form, so comparisons drop it (see normalize).
    return fcgi.RequestRejected(request_id, protocol_status, None, keep_conn)


def normalize(events):
    return [event._replace(reason=None)
            if isinstance(event, fcgi.RequestRejected) else event
            for event in events]


def feed(data, chunks=None, **state_options):
    """Feed ``data`` to a new ServerConnectionState and return its events.

    ``chunks`` is a list of chunk sizes, and the rest goes in one piece.
    """
    state = fcgi.ServerConnectionState(**state_options)
    events = []
    pos = 0
    for size in chunks or []:
        events.extend(state.receive_data(data[pos:pos + size]))
        pos += size
    events.extend(state.receive_data(data[pos:]))
    return normalize(events)


def full_request(request_id=1, params=GET_PARAMS, body=b'',
                 role=fcgi.FCGI_RESPONDER, keep_conn=False):
    return (wire.begin(request_id, role, keep_conn)
            + wire.params(request_id, params)
            + wire.stdin(request_id, body))


def pairs_block_of_size(total):
    """Build pairs of exactly ``total`` bytes and return ``(block, items)``.

    Each pair has a 1-byte name, a 4-byte value length and a value of at
    most 200,000 bytes, within the name and value limits.  ``total`` must
    be at least 6.
    """
    items = []
    remaining = total
    for index in range(total // 200006 + 2):
        if remaining <= 200006:
            break
        name = bytes(bytearray([ord('A') + index]))
        items.append((name, b'v' * 200000))
        remaining -= 200006
    items.append((b'Z', b'z' * (remaining - 6)))
    block = b''.join(wire.pair(name, value, long_value=True)
                     for name, value in items)
    return block, items


# ---------------------------------------------------------------------------
# Records: RecordParser and decode_records

@pytest.mark.parametrize('record_type', list(range(1, 12)) + [0, 12, 99, 255])
def test_record_parser_every_type(record_type):
    data = wire.record(record_type, 3, b'content')

    records = fcgi.decode_records(data)

    assert records == [fcgi.RawRecord(record_type, 3, b'content')]


@pytest.mark.parametrize('length', [0, 1, 7, 8, 9, 127, 128, 65534, 65535])
def test_record_parser_content_lengths(length):
    content = bytes(bytearray(i % 251 for i in range(length)))

    records = fcgi.decode_records(wire.record(wire.STDIN, 1, content))

    assert len(records) == 1
    assert records[0].content == content


def test_record_parser_request_id_range():
    data = wire.record(wire.STDIN, 0, b'a') + wire.record(wire.STDIN, 65535)

    records = fcgi.decode_records(data)

    assert [record.request_id for record in records] == [0, 65535]


@pytest.mark.parametrize('content_length', [0, 1, 8, 300])
def test_record_parser_any_padding(content_length):
    content = b'x' * content_length
    data = b''.join(wire.record(wire.STDIN, 1, content, padding=padding)
                    for padding in range(256))

    records = fcgi.decode_records(data)

    assert len(records) == 256
    assert set(records) == set([fcgi.RawRecord(wire.STDIN, 1, content)])


def test_record_parser_padding_split_from_header():
    parser = fcgi.RecordParser()
    data = wire.record(wire.STDIN, 1, b'abc', padding=200)

    parser.feed(data[:11])
    assert parser.next_record() is None
    assert parser.has_partial_record
    parser.feed(data[11:-1])
    assert parser.next_record() is None
    parser.feed(data[-1:])

    assert parser.next_record() == fcgi.RawRecord(wire.STDIN, 1, b'abc')
    assert not parser.has_partial_record


@pytest.mark.parametrize('version', [0, 2, 3, 255])
def test_record_parser_bad_version(version):
    parser = fcgi.RecordParser()
    # The header alone must be enough to reject the record.
    parser.feed(wire.record(wire.STDIN, 1, b'abc', version=version)[:8])

    with pytest.raises(ProtocolError):
        parser.next_record()


@pytest.mark.parametrize('version', [0, 2, 255])
def test_connection_bad_version(version):
    state = fcgi.ServerConnectionState()

    with pytest.raises(ProtocolError):
        state.receive_data(wire.record(wire.BEGIN_REQUEST, 1, b'\0' * 8,
                                       version=version))


def test_decode_records_trailing_partial():
    data = wire.record(wire.STDIN, 1, b'abc') + wire.record(wire.STDIN, 1)[:5]

    with pytest.raises(ProtocolError):
        fcgi.decode_records(data)


def test_decode_records_empty_input():
    assert fcgi.decode_records(b'') == []


def test_record_parser_partial_state():
    parser = fcgi.RecordParser()
    assert not parser.has_partial_record

    parser.feed(b'\x01')

    assert parser.has_partial_record
    assert parser.next_record() is None


# ---------------------------------------------------------------------------
# Encoders, decoded by fcgi_wire

@pytest.mark.parametrize('length', [0, 1, 7, 8, 9, 4096, 65535])
def test_encode_record_matches_wire(length):
    content = b'c' * length

    encoded = fcgi.encode_record(wire.STDOUT, 7, content)

    assert encoded == wire.record(wire.STDOUT, 7, content)
    assert len(encoded) % 8 == 0
    records, leftover = wire.parse_records(encoded)
    assert records == [wire.Rec(wire.STDOUT, 7, content)]
    assert leftover == b''


def test_encode_record_content_too_long():
    with pytest.raises(ValueError):
        fcgi.encode_record(wire.STDOUT, 1, b'x' * 65536)


def test_encode_stream_empty_is_terminator():
    encoded = fcgi.encode_stream(wire.STDOUT, 2, b'')

    assert wire.parse_records(encoded) == ([wire.Rec(wire.STDOUT, 2, b'')],
                                           b'')


def test_encode_stream_splits_large_body():
    # A max_content above the 16-bit content length must be lowered to it.
    body = bytes(bytearray(i % 256 for i in range(200000)))

    encoded = fcgi.encode_stream(wire.STDOUT, 1, body, max_content=100000)

    records, leftover = wire.parse_records(encoded)
    assert leftover == b''
    assert all(record.type == wire.STDOUT for record in records)
    assert all(record.request_id == 1 for record in records)
    assert all(0 < len(record.content) <= 65535 for record in records)
    assert b''.join(record.content for record in records) == body


@pytest.mark.parametrize('max_content', [-5, 0, 1, 3, 8, 8192, 65535])
def test_encode_stream_max_content(max_content):
    body = b'0123456789' * 7
    limit = max(1, max_content)

    records, leftover = wire.parse_records(
        fcgi.encode_stream(wire.STDERR, 4, body, max_content=max_content))

    assert leftover == b''
    assert all(0 < len(record.content) <= limit for record in records)
    assert b''.join(record.content for record in records) == body


@pytest.mark.parametrize('app_status, expected', [
    (0, 0), (1, 1), (255, 255), (2 ** 32 - 1, 2 ** 32 - 1),
    (-1, 2 ** 32 - 1), (2 ** 32 + 5, 5),
])
def test_encode_end_request_app_status(app_status, expected):
    encoded = fcgi.encode_end_request(9, app_status)

    records, _ = wire.parse_records(encoded)
    assert records[0].type == wire.END_REQUEST
    assert records[0].request_id == 9
    assert wire.parse_end_request(records[0].content) == (
        expected, wire.REQUEST_COMPLETE)
    assert encoded == wire.end_request(9, expected)


@pytest.mark.parametrize('protocol_status', [
    wire.REQUEST_COMPLETE, wire.CANT_MPX_CONN, wire.OVERLOADED,
    wire.UNKNOWN_ROLE,
])
def test_encode_end_request_protocol_status(protocol_status):
    encoded = fcgi.encode_end_request(1, 0, protocol_status)

    assert encoded == wire.end_request(1, 0, protocol_status)


@pytest.mark.parametrize('record_type', [0, 12, 99, 255])
def test_encode_unknown_type(record_type):
    encoded = fcgi.encode_unknown_type(record_type)

    records, _ = wire.parse_records(encoded)
    assert records[0].type == wire.UNKNOWN_TYPE
    assert records[0].request_id == 0
    assert wire.parse_unknown_type(records[0].content) == record_type
    assert encoded == wire.unknown_type(record_type)


@pytest.mark.parametrize('role', ALL_ROLES)
@pytest.mark.parametrize('keep_conn', [False, True])
def test_encode_begin_request(role, keep_conn):
    flags = wire.KEEP_CONN if keep_conn else 0

    encoded = fcgi.encode_begin_request(5, role, flags)

    assert encoded == wire.begin(5, role, keep_conn)


def test_constants_match_specification():
    assert (fcgi.FCGI_BEGIN_REQUEST, fcgi.FCGI_UNKNOWN_TYPE) == (1, 11)
    assert fcgi.FCGI_GET_VALUES == wire.GET_VALUES
    assert fcgi.FCGI_GET_VALUES_RESULT == wire.GET_VALUES_RESULT
    assert fcgi.FCGI_DATA == wire.DATA
    assert fcgi.FCGI_KEEP_CONN == wire.KEEP_CONN
    assert fcgi.FCGI_FILTER == wire.FILTER
    assert fcgi.FCGI_UNKNOWN_ROLE == wire.UNKNOWN_ROLE
    assert fcgi.FCGI_OVERLOADED == wire.OVERLOADED
    assert fcgi.FCGI_CANT_MPX_CONN == wire.CANT_MPX_CONN
    assert fcgi.MAX_CONTENT_LENGTH == 65535


def test_known_answers_from_specification():
    # Byte strings written out by hand from the record layouts of the FastCGI
    # Specification 1.0 (sections 3.3, 3.4, 5.1, 5.5 and 4.2).
    begin_responder = (b'\x01\x01\x00\x01\x00\x08\x00\x00'
                       b'\x00\x01\x00\x00\x00\x00\x00\x00')
    end_complete = (b'\x01\x03\x00\x01\x00\x08\x00\x00'
                    b'\x00\x00\x01\x02\x00\x00\x00\x00')
    unknown_99 = (b'\x01\x0b\x00\x00\x00\x08\x00\x00'
                  b'\x63\x00\x00\x00\x00\x00\x00\x00')
    server_port = b'\x0b\x02SERVER_PORT80'

    assert wire.begin(1) == begin_responder
    assert fcgi.encode_begin_request(1) == begin_responder
    assert wire.end_request(1, 258) == end_complete
    assert fcgi.encode_end_request(1, 258) == end_complete
    assert wire.unknown_type(99) == unknown_99
    assert fcgi.encode_unknown_type(99) == unknown_99
    assert wire.pair(b'SERVER_PORT', b'80') == server_port
    assert fcgi.encode_pair(b'SERVER_PORT', b'80') == server_port
    assert fcgi.decode_pair(server_port) == (15, (b'SERVER_PORT', b'80'))


def test_known_answer_long_lengths():
    # Name of 128 bytes: 4-byte length 0x80000080, then a 1-byte length 1.
    encoded = b'\x80\x00\x00\x80\x01' + b'n' * 128 + b'v'

    assert wire.pair(b'n' * 128, b'v') == encoded
    assert fcgi.encode_pair(b'n' * 128, b'v') == encoded
    assert fcgi.decode_pair(encoded) == (len(encoded), (b'n' * 128, b'v'))


# ---------------------------------------------------------------------------
# Name-value pairs

PAIR_LENGTHS = [0, 1, 127, 128, 129, 255, 256, 65535, 65536, 300000]


@pytest.mark.parametrize('length', PAIR_LENGTHS)
def test_encode_pair_length_boundaries(length):
    name = b'n' * length
    value = b'v' * length

    encoded = fcgi.encode_pair(name, value)

    assert encoded == wire.pair(name, value)
    assert wire.parse_pairs(encoded) == [(name, value)]
    header_length = 2 if length < 128 else 8
    assert len(encoded) == header_length + 2 * length


@pytest.mark.parametrize('name_length', PAIR_LENGTHS)
@pytest.mark.parametrize('long_name', [False, True])
@pytest.mark.parametrize('long_value', [False, True])
def test_decode_pair_length_forms(name_length, long_name, long_value):
    name = b'N' * name_length
    value = b'V' * 127
    encoded = wire.pair(name, value, long_name, long_value)

    assert fcgi.decode_pair(encoded) == (len(encoded), (name, value))


def test_decode_pair_at_offset():
    first = wire.pair(b'A', b'1')
    second = wire.pair(b'B' * 200, b'2' * 300)
    data = first + second

    position, decoded = fcgi.decode_pair(data, len(first))

    assert position == len(data)
    assert decoded == (b'B' * 200, b'2' * 300)


def test_decode_pair_value_runs_past_end():
    # A value length of 100 with only 10 value bytes present.
    data = b'\x04\x64' + b'NAME' + b'x' * 10

    with pytest.raises(ProtocolError):
        fcgi.decode_pair(data)


@pytest.mark.parametrize('data', [
    b'',                          # no length at all
    b'\x05',                      # value length missing
    b'\x80\x00',                  # 4-byte name length cut short
    b'\x01\x80\x00\x00',          # 4-byte value length cut short
    b'\x05\x00abcd',              # name one byte short
])
def test_decode_pair_truncated(data):
    with pytest.raises(ProtocolError):
        fcgi.decode_pair(data)


@pytest.mark.parametrize('name_length, value_length', [
    (0x7fffffff, 0), (0, 0x7fffffff), (0x7fffffff, 0x7fffffff),
    (128, 0x40000000),
])
def test_decode_pair_huge_claimed_length(name_length, value_length):
    data = (wire.encode_length(name_length, True)
            + wire.encode_length(value_length, True) + b'abc')

    with pytest.raises(ProtocolError):
        fcgi.decode_pair(data)


def test_decode_pair_ignores_top_length_bit():
    # The top bit marks the 4-byte form and is not part of the length.
    data = b'\x80\x00\x00\x02' + b'\x80\x00\x00\x01' + b'ABc'

    assert fcgi.decode_pair(data) == (len(data), (b'AB', b'c'))


def test_encode_pair_too_long_for_31_bits():
    class HugeName(bytes):
        # Pretends to be 2**31 bytes long without allocating it.
        def __len__(self):
            return 2 ** 31

    with pytest.raises(ValueError):
        fcgi.encode_pair(HugeName(b'x'), b'')


def test_decode_pairs_many():
    items = [(('NAME%d' % i).encode('ascii'), b'v' * i) for i in range(300)]

    decoded = fcgi.decode_pairs(wire.pairs(items))

    assert decoded == items


def test_decode_pairs_memoryview():
    data = wire.pairs(GET_PARAMS)

    assert fcgi.decode_pairs(memoryview(data)) == GET_PARAMS


def test_decode_pairs_empty():
    assert fcgi.decode_pairs(b'') == []


def test_decode_pairs_truncated_second_pair():
    data = wire.pair(b'A', b'1') + wire.pair(b'B', b'2' * 100)[:-1]

    with pytest.raises(ProtocolError):
        fcgi.decode_pairs(data)


def test_decode_pairs_name_limit():
    at_limit = wire.pair(b'n' * fcgi.MAX_NAME_LENGTH, b'v')
    over_limit = wire.pair(b'n' * (fcgi.MAX_NAME_LENGTH + 1), b'v')

    assert len(fcgi.decode_pairs(at_limit)[0][0]) == fcgi.MAX_NAME_LENGTH
    with pytest.raises(ProtocolError):
        fcgi.decode_pairs(over_limit)


def test_decode_pairs_value_limit():
    at_limit = wire.pair(b'n', b'v' * fcgi.MAX_VALUE_LENGTH)
    over_limit = wire.pair(b'n', b'v' * (fcgi.MAX_VALUE_LENGTH + 1))

    assert len(fcgi.decode_pairs(at_limit)[0][1]) == fcgi.MAX_VALUE_LENGTH
    with pytest.raises(ProtocolError):
        fcgi.decode_pairs(over_limit)


def test_decode_pairs_custom_limits():
    data = wire.pair(b'abc', b'12345')

    assert fcgi.decode_pairs(data, max_name=3, max_value=5) == [
        (b'abc', b'12345')]
    with pytest.raises(ProtocolError):
        fcgi.decode_pairs(data, max_name=2)
    with pytest.raises(ProtocolError):
        fcgi.decode_pairs(data, max_value=4)


def test_encode_pairs_matches_wire():
    assert fcgi.encode_pairs(GET_PARAMS) == wire.pairs(GET_PARAMS)
    assert fcgi.encode_pairs([]) == b''


# ---------------------------------------------------------------------------
# ServerConnectionState: requests

def test_connection_get_request():
    events = feed(full_request(1))

    assert events == [started(1), fcgi.StdinReceived(1, b'')]


def test_connection_keep_conn_flag():
    events = feed(full_request(1, keep_conn=True))

    assert events[0] == started(1, keep_conn=True)


def test_connection_begin_unknown_flag_bits():
    # Flag bits other than FCGI_KEEP_CONN are reserved and ignored.
    begin = wire.record(wire.BEGIN_REQUEST, 1,
                        struct.pack('>HB5x', wire.RESPONDER, 0xfe))
    data = begin + wire.params(1, GET_PARAMS) + wire.stdin(1, b'')

    assert feed(data)[0] == started(1, keep_conn=False)


def test_connection_params_order_kept():
    params = [(b'Z', b'1'), (b'A', b'2'), (b'Z', b'3')]

    events = feed(full_request(1, params=params))

    assert events[0].params == params


def test_connection_params_split_inside_pairs():
    params = [(b'N' * 200, b'v' * 300), (b'SHORT', b'')] + GET_PARAMS
    data = (wire.begin(1) + wire.params(1, params, chunk=3)
            + wire.stdin(1, b''))

    events = feed(data)

    assert events[0] == started(1, params=params)


def test_connection_post_body_records():
    body = b'0123456789' * 10
    data = (wire.begin(1) + wire.params(1, GET_PARAMS)
            + wire.stdin(1, body, chunk=30))

    events = feed(data)

    assert events[1:] == [
        fcgi.StdinReceived(1, body[0:30]),
        fcgi.StdinReceived(1, body[30:60]),
        fcgi.StdinReceived(1, body[60:90]),
        fcgi.StdinReceived(1, body[90:100]),
        fcgi.StdinReceived(1, b''),
    ]


def test_connection_stdin_record_max_size():
    body = b's' * 65535

    events = feed(full_request(1, body=body))

    assert events[1] == fcgi.StdinReceived(1, body)
    assert events[2] == fcgi.StdinReceived(1, b'')


def test_connection_empty_params_stream():
    events = feed(full_request(1, params=[]))

    assert events[0] == started(1, params=[])


def test_connection_get_values():
    names = [wire.MAX_CONNS, wire.MAX_REQS, wire.MPXS_CONNS]

    events = feed(wire.get_values(names))

    assert events == [fcgi.GetValues(
        [b'FCGI_MAX_CONNS', b'FCGI_MAX_REQS', b'FCGI_MPXS_CONNS'])]


def test_connection_get_values_ignores_values():
    content = wire.pairs([(b'FCGI_MAX_REQS', b'ignored')])

    events = feed(wire.record(wire.GET_VALUES, 0, content))

    assert events == [fcgi.GetValues([b'FCGI_MAX_REQS'])]


def test_connection_get_values_empty():
    assert feed(wire.get_values([])) == [fcgi.GetValues([])]


def test_connection_get_values_truncated():
    content = wire.pair(b'FCGI_MAX_CONNS', b'')[:-3]

    with pytest.raises(ProtocolError):
        feed(wire.record(wire.GET_VALUES, 0, content))


@pytest.mark.parametrize('record_type', [
    0, wire.END_REQUEST, wire.STDOUT, wire.GET_VALUES_RESULT,
    wire.UNKNOWN_TYPE, 12, 99, 255,
])
def test_connection_unknown_management_type(record_type):
    events = feed(wire.record(record_type, 0, b'whatever'))

    assert events == [fcgi.UnknownType(record_type)]


def test_connection_unknown_type_then_request():
    data = wire.record(99, 0, b'\0' * 8) + full_request(1)

    events = feed(data)

    assert events == [fcgi.UnknownType(99), started(1),
                      fcgi.StdinReceived(1, b'')]


@pytest.mark.parametrize('record_type', [
    wire.END_REQUEST, wire.STDOUT, wire.STDERR, wire.GET_VALUES,
    wire.GET_VALUES_RESULT, wire.UNKNOWN_TYPE, 0, 12, 99,
])
def test_connection_wrong_type_for_request(record_type):
    # A web server sends none of these types with a request id other than 0.
    state = fcgi.ServerConnectionState()
    state.receive_data(wire.begin(1))

    with pytest.raises(ProtocolError) as info:
        state.receive_data(wire.record(record_type, 1, b''))

    assert info.value.request_id == 1


@pytest.mark.parametrize('role', [0, wire.AUTHORIZER, wire.FILTER, 4, 65535])
def test_connection_unknown_role(role):
    data = (wire.begin(1, role) + wire.params(1, GET_PARAMS)
            + wire.stdin(1, b'ignored'))
    state = fcgi.ServerConnectionState()

    events = state.receive_data(data)

    assert len(events) == 1
    assert isinstance(events[0], fcgi.RequestRejected)
    assert events[0].request_id == 1
    assert events[0].protocol_status == fcgi.FCGI_UNKNOWN_ROLE
    assert events[0].reason
    assert state.open_request_ids == []
    assert not state.awaiting_input


@pytest.mark.parametrize('role', ALL_ROLES)
def test_connection_roles_option(role):
    events = feed(wire.begin(1, role) + wire.params(1, GET_PARAMS),
                  roles=ALL_ROLES)

    expected = [started(1, role=role)]
    if role == wire.AUTHORIZER:
        # An Authorizer's input ends with its PARAMS.
        expected.append(fcgi.StdinReceived(1, b''))
    assert events == expected


def test_connection_second_request_without_multiplexing():
    data = (wire.begin(1) + wire.params(1, GET_PARAMS)
            + wire.begin(2) + wire.params(2, GET_PARAMS)
            + wire.stdin(2, b'x') + wire.stdin(1, b'body'))

    events = feed(data)

    assert events == [
        started(1),
        rejected(2, fcgi.FCGI_CANT_MPX_CONN),
        fcgi.StdinReceived(1, b'body'),
        fcgi.StdinReceived(1, b''),
    ]


def test_connection_multiplexed_interleaved():
    params_2 = [(b'PATH_INFO', b'/two')]
    data = (wire.begin(1) + wire.begin(2, keep_conn=True)
            + wire.params(2, params_2) + wire.params(1, GET_PARAMS)
            + wire.record(wire.STDIN, 1, b'one')
            + wire.stdin(2, b'') + wire.stdin(1, b''))

    events = feed(data, multiplexed=True)

    assert events == [
        started(2, params=params_2, keep_conn=True),
        started(1),
        fcgi.StdinReceived(1, b'one'),
        fcgi.StdinReceived(2, b''),
        fcgi.StdinReceived(1, b''),
    ]


def test_connection_request_ended_frees_id():
    state = fcgi.ServerConnectionState()
    state.receive_data(full_request(1))
    assert state.open_request_ids == [1]

    state.request_ended(1)
    events = state.receive_data(full_request(1))

    assert normalize(events) == [started(1), fcgi.StdinReceived(1, b'')]


def test_connection_request_ended_unknown_id():
    state = fcgi.ServerConnectionState()

    state.request_ended(42)

    assert state.open_request_ids == []


def test_connection_after_end_accepts_next_request():
    state = fcgi.ServerConnectionState()
    state.receive_data(full_request(1))
    state.request_ended(1)

    events = normalize(state.receive_data(full_request(2)))

    assert events[0] == started(2)


def test_connection_duplicate_begin():
    state = fcgi.ServerConnectionState(multiplexed=True)
    state.receive_data(wire.begin(3))

    with pytest.raises(ProtocolError) as info:
        state.receive_data(wire.begin(3))

    assert info.value.request_id == 3


@pytest.mark.parametrize('length', [0, 7, 9, 16])
def test_connection_begin_body_wrong_size(length):
    body = (b'\x00\x01' + b'\0' * 14)[:length]

    with pytest.raises(ProtocolError):
        feed(wire.record(wire.BEGIN_REQUEST, 1, body))


def test_connection_filter_role():
    data = (wire.begin(1, wire.FILTER) + wire.params(1, GET_PARAMS)
            + wire.stdin(1, b'in') + wire.data(1, b'file data', chunk=4))

    events = feed(data, roles=ALL_ROLES)

    assert events == [
        started(1, role=wire.FILTER),
        fcgi.StdinReceived(1, b'in'),
        fcgi.StdinReceived(1, b''),
        fcgi.DataReceived(1, b'file'),
        fcgi.DataReceived(1, b' dat'),
        fcgi.DataReceived(1, b'a'),
        fcgi.DataReceived(1, b''),
    ]


def test_connection_filter_data_before_stdin_end():
    data = (wire.begin(1, wire.FILTER) + wire.params(1, GET_PARAMS)
            + wire.record(wire.STDIN, 1, b'in') + wire.data(1, b'x'))

    with pytest.raises(ProtocolError):
        feed(data, roles=ALL_ROLES)


def test_connection_authorizer_input_ends_with_params():
    # The specification (section 6.3) gives an Authorizer only FCGI_PARAMS,
    # and Apache httpd's mod_authnz_fcgi sends no FCGI_STDIN to one.  Once
    # PARAMS end the request has all its input, so no read timeout applies.
    state = fcgi.ServerConnectionState(roles=ALL_ROLES)

    events = state.receive_data(wire.begin(1, wire.AUTHORIZER)
                                + wire.params(1, GET_PARAMS))

    assert events == [started(1, role=wire.AUTHORIZER),
                      fcgi.StdinReceived(1, b'')]
    assert not state.awaiting_input


def test_connection_authorizer_empty_stdin_accepted():
    # A web server may still send an empty FCGI_STDIN, which must be accepted.
    data = (wire.begin(1, wire.AUTHORIZER) + wire.params(1, GET_PARAMS)
            + wire.stdin(1, b''))

    events = feed(data, roles=ALL_ROLES)

    assert events[0] == started(1, role=wire.AUTHORIZER)
    assert events[1:] in ([], [fcgi.StdinReceived(1, b'')])


def test_connection_data_for_responder():
    with pytest.raises(ProtocolError):
        feed(full_request(1) + wire.data(1, b'x'))


def test_connection_stdin_before_params_end():
    data = (wire.begin(1) + wire.record(wire.PARAMS, 1, wire.pairs(GET_PARAMS))
            + wire.stdin(1, b''))
    state = fcgi.ServerConnectionState()

    with pytest.raises(ProtocolError) as info:
        state.receive_data(data)

    assert info.value.request_id == 1


def test_connection_params_after_params_end():
    data = (wire.begin(1) + wire.params(1, GET_PARAMS)
            + wire.params(1, GET_PARAMS))

    with pytest.raises(ProtocolError):
        feed(data)


def test_connection_stdin_after_stdin_end():
    with pytest.raises(ProtocolError):
        feed(full_request(1) + wire.stdin(1, b'more'))


def test_connection_truncated_pair_in_params():
    # The value length (100) runs past the end of the PARAMS stream.
    content = b'\x04\x64NAME' + b'x' * 10
    data = (wire.begin(1) + wire.record(wire.PARAMS, 1, content)
            + wire.record(wire.PARAMS, 1) + wire.stdin(1, b''))
    state = fcgi.ServerConnectionState()

    with pytest.raises(ProtocolError) as info:
        state.receive_data(data)

    assert info.value.request_id == 1


def test_connection_abort_during_stdin():
    data = (wire.begin(1) + wire.params(1, GET_PARAMS)
            + wire.record(wire.STDIN, 1, b'part') + wire.abort(1))
    state = fcgi.ServerConnectionState()

    events = state.receive_data(data)

    assert events == [started(1), fcgi.StdinReceived(1, b'part'),
                      fcgi.RequestAborted(1)]
    # The id stays open until the driver has sent FCGI_END_REQUEST.
    assert state.open_request_ids == [1]
    state.request_ended(1)
    assert state.open_request_ids == []


def test_connection_abort_before_params_end():
    events = feed(wire.begin(1) + wire.abort(1))

    assert events == [fcgi.RequestAborted(1)]


def test_connection_abort_after_input_complete():
    events = feed(full_request(1) + wire.abort(1))

    assert events[-1] == fcgi.RequestAborted(1)


@pytest.mark.parametrize('record', [
    wire.abort(7),
    wire.params(7, GET_PARAMS),
    wire.record(wire.PARAMS, 7, b'\x04\x64NAME'),
    wire.stdin(7, b'body'),
    wire.data(7, b'data'),
])
def test_connection_inactive_id_ignored(record):
    state = fcgi.ServerConnectionState()
    state.receive_data(wire.begin(1))

    assert state.receive_data(record) == []
    assert state.open_request_ids == [1]


def test_connection_records_after_rejection_ignored():
    data = (wire.begin(1, role=wire.AUTHORIZER) + wire.params(1, GET_PARAMS)
            + wire.stdin(1, b'x') + wire.abort(1))

    events = feed(data)

    assert events == [rejected(1, fcgi.FCGI_UNKNOWN_ROLE)]


# ---------------------------------------------------------------------------
# ServerConnectionState: limits

def test_connection_params_bytes_limit_default():
    record = wire.record(wire.PARAMS, 1, b'p' * 65535)
    count = fcgi.MAX_PARAMS_BYTES // 65535 + 1
    state = fcgi.ServerConnectionState()
    state.receive_data(wire.begin(1))
    for _ in range(count - 1):
        assert state.receive_data(record) == []

    with pytest.raises(ProtocolError) as info:
        state.receive_data(record)

    assert info.value.request_id == 1


def test_connection_params_bytes_at_limit():
    block, items = pairs_block_of_size(fcgi.MAX_PARAMS_BYTES)
    assert len(block) == fcgi.MAX_PARAMS_BYTES
    data = (wire.begin(1) + wire.stream(wire.PARAMS, 1, block)
            + wire.stdin(1, b''))

    events = feed(data)

    assert events[0] == started(1, params=items)


@pytest.mark.parametrize('size, accepted', [(99, True), (100, True),
                                            (101, False)])
def test_connection_params_bytes_custom_limit(size, accepted):
    block, items = pairs_block_of_size(size)
    assert len(block) == size
    data = wire.begin(1) + wire.stream(wire.PARAMS, 1, block, chunk=7)

    if accepted:
        assert feed(data, max_params_bytes=100) == [started(1, params=items)]
    else:
        with pytest.raises(ProtocolError):
            feed(data, max_params_bytes=100)


@pytest.mark.parametrize('extra, accepted', [(0, True), (1, False)])
def test_connection_param_name_limit(extra, accepted):
    params = [(b'N' * (fcgi.MAX_NAME_LENGTH + extra), b'v')]
    state = fcgi.ServerConnectionState()

    if accepted:
        assert state.receive_data(full_request(1, params))[0].params == params
    else:
        with pytest.raises(ProtocolError) as info:
            state.receive_data(full_request(1, params))
        assert info.value.request_id == 1


@pytest.mark.parametrize('extra, accepted', [(0, True), (1, False)])
def test_connection_param_value_limit(extra, accepted):
    params = [(b'HTTP_COOKIE', b'c' * (fcgi.MAX_VALUE_LENGTH + extra))]
    state = fcgi.ServerConnectionState()

    if accepted:
        assert state.receive_data(full_request(1, params))[0].params == params
    else:
        with pytest.raises(ProtocolError) as info:
            state.receive_data(full_request(1, params))
        assert info.value.request_id == 1


def test_connection_max_requests_default():
    state = fcgi.ServerConnectionState(multiplexed=True)
    limit = fcgi.MAX_REQUESTS_PER_CONNECTION
    opening = b''.join(wire.begin(request_id)
                       for request_id in range(1, limit + 1))
    assert state.receive_data(opening) == []
    assert len(state.open_request_ids) == limit

    events = state.receive_data(wire.begin(limit + 1))

    assert normalize(events) == [rejected(limit + 1, fcgi.FCGI_OVERLOADED)]
    assert len(state.open_request_ids) == limit


def test_connection_max_requests_custom():
    data = wire.begin(1) + wire.begin(2) + wire.begin(3)

    events = feed(data, multiplexed=True, max_requests=2)

    assert events == [rejected(3, fcgi.FCGI_OVERLOADED)]


def test_connection_max_requests_slot_reused():
    state = fcgi.ServerConnectionState(multiplexed=True, max_requests=1)
    state.receive_data(wire.begin(1))
    state.request_ended(1)

    assert state.receive_data(wire.begin(2)) == []
    assert state.open_request_ids == [2]


# ---------------------------------------------------------------------------
# ServerConnectionState: awaiting_input

def test_awaiting_input_responder_lifecycle():
    state = fcgi.ServerConnectionState()
    assert not state.awaiting_input

    state.receive_data(wire.begin(1)[:3])
    assert state.awaiting_input            # partial header
    state.receive_data(wire.begin(1)[3:])
    assert state.awaiting_input            # PARAMS expected
    state.receive_data(wire.params(1, GET_PARAMS))
    assert state.awaiting_input            # STDIN expected
    state.receive_data(wire.record(wire.STDIN, 1, b'body'))
    assert state.awaiting_input
    state.receive_data(wire.stdin(1, b''))
    assert not state.awaiting_input        # input complete, app running
    state.request_ended(1)
    assert not state.awaiting_input


def test_awaiting_input_filter_waits_for_data():
    state = fcgi.ServerConnectionState(roles=ALL_ROLES)
    state.receive_data(wire.begin(1, wire.FILTER) + wire.params(1, GET_PARAMS)
                       + wire.stdin(1, b''))
    assert state.awaiting_input

    state.receive_data(wire.data(1, b'd'))

    assert not state.awaiting_input


def test_awaiting_input_partial_management_record():
    state = fcgi.ServerConnectionState()
    query = wire.get_values([wire.MAX_CONNS])

    assert state.receive_data(query[:-1]) == []
    assert state.awaiting_input
    assert state.receive_data(query[-1:]) == [fcgi.GetValues([b'FCGI_MAX_CONNS'])]
    assert not state.awaiting_input


def test_awaiting_input_after_rejection():
    state = fcgi.ServerConnectionState()

    state.receive_data(wire.begin(1, wire.AUTHORIZER))

    assert not state.awaiting_input


def test_awaiting_input_aborted_request():
    state = fcgi.ServerConnectionState()
    state.receive_data(wire.begin(1) + wire.abort(1))
    assert state.awaiting_input

    state.request_ended(1)

    assert not state.awaiting_input


def test_awaiting_input_one_of_two_open():
    state = fcgi.ServerConnectionState(multiplexed=True)
    state.receive_data(full_request(1) + wire.begin(2))
    assert state.awaiting_input

    state.receive_data(wire.params(2, GET_PARAMS) + wire.stdin(2, b''))

    assert not state.awaiting_input


# ---------------------------------------------------------------------------
# Corpus of record streams, replayed whole, byte by byte and in chunks

Case = collections.namedtuple(
    'Case', 'name data options events error_request_id')
# ``events`` are those expected before the end of ``data``, or before the
# ProtocolError when ``error_request_id`` is not None.


def _varied_padding_request():
    records = [
        wire.record(wire.BEGIN_REQUEST, 1, struct.pack('>HB5x', 1, 1), 255),
        wire.record(wire.PARAMS, 1, wire.pairs(GET_PARAMS), 0),
        wire.record(wire.PARAMS, 1, b'', 3),
        wire.record(wire.STDIN, 1, b'abc', 1),
        wire.record(wire.STDIN, 1, b'', 128),
    ]
    return b''.join(records)


def _build_corpus():
    body = bytes(bytearray(i % 256 for i in range(70000)))
    cgi = wire.cgi_params('POST', '/form', query='x=1', body=b'a=b',
                          headers=[('Content-Type', 'text/plain'),
                                   ('Cookie', 'k=' + 'c' * 300)])
    cgi_items = [(wire.to_bytes(name), wire.to_bytes(value))
                 for name, value in cgi.items()]
    cases = [
        Case('get', full_request(1), {},
             [started(1), fcgi.StdinReceived(1, b'')], None),
        Case('post_nginx_params', full_request(1, cgi_items, b'a=b'), {},
             [started(1, cgi_items), fcgi.StdinReceived(1, b'a=b'),
              fcgi.StdinReceived(1, b'')], None),
        Case('params_one_byte_records',
             wire.begin(1) + wire.params(1, cgi_items, chunk=1)
             + wire.stdin(1, b''), {},
             [started(1, cgi_items), fcgi.StdinReceived(1, b'')], None),
        Case('large_body', full_request(1, body=body), {},
             [started(1), fcgi.StdinReceived(1, body[:65535]),
              fcgi.StdinReceived(1, body[65535:]),
              fcgi.StdinReceived(1, b'')], None),
        Case('varied_padding', _varied_padding_request(), {},
             [started(1, keep_conn=True), fcgi.StdinReceived(1, b'abc'),
              fcgi.StdinReceived(1, b'')], None),
        Case('management_then_request',
             wire.get_values([wire.MAX_CONNS, wire.MPXS_CONNS])
             + wire.record(99, 0, b'\0' * 8) + full_request(1), {},
             [fcgi.GetValues([b'FCGI_MAX_CONNS', b'FCGI_MPXS_CONNS']),
              fcgi.UnknownType(99), started(1),
              fcgi.StdinReceived(1, b'')], None),
        Case('cant_mpx',
             wire.begin(1) + wire.begin(2) + wire.params(2, GET_PARAMS)
             + wire.params(1, GET_PARAMS) + wire.stdin(1, b''), {},
             [rejected(2, fcgi.FCGI_CANT_MPX_CONN), started(1),
              fcgi.StdinReceived(1, b'')], None),
        Case('unknown_role', full_request(1, role=wire.FILTER), {},
             [rejected(1, fcgi.FCGI_UNKNOWN_ROLE)], None),
        Case('multiplexed',
             wire.begin(1) + wire.begin(2) + wire.params(1, GET_PARAMS)
             + wire.params(2, GET_PARAMS) + wire.stdin(2, b'two')
             + wire.abort(1), {'multiplexed': True},
             [started(1), started(2), fcgi.StdinReceived(2, b'two'),
              fcgi.StdinReceived(2, b''), fcgi.RequestAborted(1)], None),
        Case('overloaded',
             wire.begin(1) + wire.begin(2) + wire.begin(3)
             + wire.params(3, GET_PARAMS),
             {'multiplexed': True, 'max_requests': 2},
             [rejected(3, fcgi.FCGI_OVERLOADED)], None),
        Case('filter',
             wire.begin(1, wire.FILTER) + wire.params(1, GET_PARAMS)
             + wire.stdin(1, b'') + wire.data(1, b'data'),
             {'roles': ALL_ROLES},
             [started(1, role=wire.FILTER), fcgi.StdinReceived(1, b''),
              fcgi.DataReceived(1, b'data'), fcgi.DataReceived(1, b'')],
             None),
        Case('inactive_ids',
             wire.abort(9) + wire.stdin(9, b'x') + full_request(1)
             + wire.params(4, GET_PARAMS), {},
             [started(1), fcgi.StdinReceived(1, b'')], None),
        Case('long_length_forms',
             wire.begin(1)
             + wire.record(wire.PARAMS, 1,
                           wire.pair(b'A', b'1', True, True)
                           + wire.pair(b'B' * 128, b'2' * 127)
                           + wire.pair(b'C' * 127, b'3' * 128))
             + wire.record(wire.PARAMS, 1), {},
             [started(1, [(b'A', b'1'), (b'B' * 128, b'2' * 127),
                          (b'C' * 127, b'3' * 128)])], None),
        Case('authorizer_params_only',
             wire.begin(1, wire.AUTHORIZER) + wire.params(1, GET_PARAMS),
             {'roles': ALL_ROLES},
             [started(1, role=wire.AUTHORIZER), fcgi.StdinReceived(1, b'')],
             None),
        Case('error_bad_version',
             full_request(1) + wire.record(wire.BEGIN_REQUEST, 2, b'\0' * 8,
                                           version=2), {},
             [started(1), fcgi.StdinReceived(1, b'')], 0),
        Case('error_truncated_pair',
             wire.begin(1) + wire.record(wire.PARAMS, 1, b'\x04\x64NAMEvalue')
             + wire.record(wire.PARAMS, 1) + wire.stdin(1, b''), {}, [], 1),
        Case('error_stdin_before_params_end',
             wire.begin(1) + wire.record(wire.PARAMS, 1, wire.pairs(GET_PARAMS))
             + wire.stdin(1, b'x'), {}, [], 1),
        Case('error_begin_body_short',
             wire.get_values([]) + wire.record(wire.BEGIN_REQUEST, 1, b'\0\1'),
             {}, [fcgi.GetValues([])], 1),
        Case('error_stdout_from_web_server',
             full_request(1) + wire.stdout(1, b'x'), {},
             [started(1), fcgi.StdinReceived(1, b'')], 1),
        Case('error_duplicate_begin',
             wire.begin(5) + wire.params(5, GET_PARAMS) + wire.begin(5), {},
             [started(5)], 5),
        Case('error_name_too_long',
             full_request(1, [(b'N' * (fcgi.MAX_NAME_LENGTH + 1), b'')]), {},
             [], 1),
        Case('error_params_over_limit',
             wire.begin(1) + wire.params(1, [(b'A', b'b' * 200)], chunk=64),
             {'max_params_bytes': 128}, [], 1),
    ]
    return cases


CORPUS = _build_corpus()
REPLAY_SEEDS = [1, 2, 3, 4, 5]


def replay(case, chunk_sizes):
    """Feed ``case.data`` in chunks; return (events, error or None)."""
    state = fcgi.ServerConnectionState(**case.options)
    events = []
    pos = 0
    for size in chunk_sizes:
        try:
            events.extend(state.receive_data(case.data[pos:pos + size]))
        except ProtocolError as error:
            return normalize(events), error
        pos += size
    assert pos == len(case.data)
    return normalize(events), None


def check_replay(case, events, error):
    if case.error_request_id is None:
        assert error is None
        assert events == case.events
    else:
        assert error is not None
        assert error.request_id == case.error_request_id
        # Events of earlier chunks were returned before the error.
        assert events == case.events[:len(events)]


def random_chunk_sizes(length, seed):
    rng = random.Random(seed)
    sizes = []
    remaining = length
    # Each size is at least 1, so the loop ends within ``length`` passes.
    while remaining > 0:
        size = min(remaining, rng.choice([1, 2, 3, 7, 8, 9, 64, 1000, 70000]))
        sizes.append(size)
        remaining -= size
    return sizes


@pytest.mark.parametrize('case', CORPUS, ids=[case.name for case in CORPUS])
def test_corpus_whole(case):
    events, error = replay(case, [len(case.data)])

    check_replay(case, events, error)
    if error is not None:
        # receive_data raises, so events of the same call are not returned.
        assert events == []


@pytest.mark.parametrize('case', CORPUS, ids=[case.name for case in CORPUS])
def test_corpus_byte_by_byte(case):
    events, error = replay(case, [1] * len(case.data))

    check_replay(case, events, error)
    if error is not None:
        # Every event before the error was complete in an earlier byte.
        assert events == case.events


@pytest.mark.parametrize('seed', REPLAY_SEEDS)
@pytest.mark.parametrize('case', CORPUS, ids=[case.name for case in CORPUS])
def test_corpus_random_chunks(case, seed):
    events, error = replay(case, random_chunk_sizes(len(case.data), seed))

    check_replay(case, events, error)


def test_corpus_covers_every_request_type():
    types = set()
    for case in CORPUS:
        records, _ = wire.parse_records(case.data[:_framed_length(case.data)])
        types.update(record.type for record in records)

    assert set([wire.BEGIN_REQUEST, wire.ABORT_REQUEST, wire.PARAMS,
                wire.STDIN, wire.DATA, wire.GET_VALUES, wire.STDOUT,
                99]) <= types


def _framed_length(data):
    # Stop before a record with a bad version, which fcgi_wire cannot frame.
    pos = 0
    while pos + 8 <= len(data) and bytearray(data[pos:pos + 1])[0] == 1:
        pos += 8 + struct.unpack('>H', data[pos + 4:pos + 6])[0] + bytearray(
            data[pos + 6:pos + 7])[0]
    return min(pos, len(data))


# ---------------------------------------------------------------------------
# Property tests

names_and_values = st.binary(max_size=300)


@HYPOTHESIS_SETTINGS
@given(name=names_and_values, value=names_and_values,
       long_name=st.booleans(), long_value=st.booleans())
def test_pair_round_trip(name, value, long_name, long_value):
    encoded = wire.pair(name, value, long_name, long_value)

    assert fcgi.decode_pair(encoded) == (len(encoded), (name, value))
    assert wire.parse_pairs(fcgi.encode_pair(name, value)) == [(name, value)]
    assert fcgi.encode_pair(name, value) == wire.pair(name, value)


@HYPOTHESIS_SETTINGS
@given(items=st.lists(st.tuples(names_and_values, names_and_values),
                      max_size=20))
def test_pairs_round_trip(items):
    assert fcgi.decode_pairs(wire.pairs(items)) == items
    assert wire.parse_pairs(fcgi.encode_pairs(items)) == items


@HYPOTHESIS_SETTINGS
@given(record_type=st.integers(0, 255), request_id=st.integers(0, 65535),
       content=st.binary(max_size=2000), padding=st.integers(0, 255))
def test_record_round_trip(record_type, request_id, content, padding):
    incoming = wire.record(record_type, request_id, content, padding)
    outgoing = fcgi.encode_record(record_type, request_id, content)

    assert fcgi.decode_records(incoming) == [
        fcgi.RawRecord(record_type, request_id, content)]
    assert wire.parse_records(outgoing) == (
        [wire.Rec(record_type, request_id, content)], b'')
    assert outgoing == wire.record(record_type, request_id, content)


@HYPOTHESIS_SETTINGS
@given(data=st.binary(max_size=3000), multiplexed=st.booleans(),
       split=st.integers(0, 3000))
def test_random_bytes_raise_only_protocol_error(data, multiplexed, split):
    state = fcgi.ServerConnectionState(multiplexed=multiplexed,
                                       roles=ALL_ROLES)
    try:
        state.receive_data(data[:split])
        state.receive_data(data[split:])
    except ProtocolError:
        pass


record_strategy = st.tuples(
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99]),
    st.integers(0, 3),
    st.one_of(st.binary(max_size=40),
              st.sampled_from([b'', b'\x00\x01\x00\x00\x00\x00\x00\x00',
                               b'\x00\x03\x01\x00\x00\x00\x00\x00',
                               wire.pairs(GET_PARAMS), b'\x04\x64NAME'])),
    st.integers(0, 16),
)
EVENT_TYPES = (fcgi.GetValues, fcgi.UnknownType, fcgi.RequestRejected,
               fcgi.RequestStarted, fcgi.StdinReceived, fcgi.DataReceived,
               fcgi.RequestAborted)


@HYPOTHESIS_SETTINGS
@given(records=st.lists(record_strategy, max_size=30),
       multiplexed=st.booleans(), end_requests=st.booleans())
def test_random_records_raise_only_protocol_error(records, multiplexed,
                                                  end_requests):
    state = fcgi.ServerConnectionState(multiplexed=multiplexed,
                                       roles=ALL_ROLES, max_requests=2)
    try:
        for record_type, request_id, content, padding in records:
            events = state.receive_data(
                wire.record(record_type, request_id, content, padding))
            for event in events:
                assert isinstance(event, EVENT_TYPES)
                if end_requests and isinstance(event, fcgi.RequestAborted):
                    state.request_ended(event.request_id)
    except ProtocolError:
        pass
    assert len(state.open_request_ids) <= 2


@HYPOTHESIS_SETTINGS
@given(cuts=st.lists(st.integers(1, 200), max_size=40))
def test_chunking_does_not_change_events(cuts):
    data = (wire.get_values([wire.MAX_REQS]) + wire.begin(1)
            + wire.params(1, GET_PARAMS, chunk=5) + wire.stdin(1, b'x' * 300,
                                                               chunk=100))
    expected = feed(data)

    assert feed(data, chunks=cuts) == expected


# ---------------------------------------------------------------------------
# The test client in fcgi_wire, against a scripted application on loopback

class ScriptedApplication(object):
    """A one-connection FastCGI application that runs ``script(conn)``.

    It listens on 127.0.0.1, ::1 or a Unix socket in a temporary folder.
    ``error`` is the exception the script raised, if any.
    """

    def __init__(self, script, family=socket.AF_INET):
        self.script = script
        self.error = None
        self.folder = None
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            self.folder = tempfile.mkdtemp()
            self.listener.bind(os.path.join(self.folder, 'fcgi.sock'))
        elif family == socket.AF_INET6:
            self.listener.bind(('::1', 0))
        else:
            self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1)
        self.listener.settimeout(5.0)
        self.address = self.listener.getsockname()
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(5.0)
            try:
                self.script(conn)
            finally:
                conn.close()
        except Exception as error:  # reported by close()
            self.error = error

    def close(self):
        self.thread.join(10.0)
        self.listener.close()
        if self.folder:
            shutil.rmtree(self.folder)
        assert not self.thread.is_alive()


def read_request(conn, request_id=1, stream_type=wire.STDIN):
    """Read records until the end of ``stream_type``; return the records."""
    data = b''
    for _ in range(10000):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        records, _ = wire.parse_records(data)
        if any(record.type == stream_type and not record.content
               and record.request_id == request_id for record in records):
            return records
    raise AssertionError('request %d never ended its stream' % request_id)


def reply(conn, stdout, stderr=b'', app_status=0, request_id=1):
    conn.sendall(wire.stdout(request_id, stdout)
                 + (wire.stderr(request_id, stderr) if stderr else b'')
                 + wire.end_request(request_id, app_status))


@pytest.fixture
def run_application():
    applications = []

    def start(script, family=socket.AF_INET):
        application = ScriptedApplication(script, family)
        applications.append(application)
        return application

    yield start
    for application in applications:
        application.close()
        assert application.error is None


def has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            probe.bind(('::1', 0))
        finally:
            probe.close()
    except socket.error:
        return False
    return True


FAMILIES = [socket.AF_INET, socket.AF_UNIX]
if has_ipv6_loopback():
    FAMILIES.append(socket.AF_INET6)


@pytest.mark.parametrize('family', FAMILIES)
def test_client_request_response(run_application, family):
    received = []

    def script(conn):
        received.extend(read_request(conn))
        reply(conn, b'Status: 404 Not Found\r\nX-One: 1\r\n\r\nmissing',
              stderr=b'warning', app_status=3)

    application = run_application(script, family)
    with wire.Client(application.address, timeout=5.0) as client:
        response = client.request(wire.cgi_params('POST', '/x', body=b'abc'),
                                  body=b'abc', keep_conn=True)

    assert response.status == 404
    assert response.headers == [('Status', '404 Not Found'), ('X-One', '1')]
    assert response.header('x-one') == '1'
    assert response.body == b'missing'
    assert response.stderr == b'warning'
    assert response.app_status == 3
    assert response.protocol_status == wire.REQUEST_COMPLETE
    assert received[0] == wire.Rec(wire.BEGIN_REQUEST, 1,
                                   b'\x00\x01\x01\x00\x00\x00\x00\x00')
    stdin_bytes = b''.join(record.content for record in received
                           if record.type == wire.STDIN)
    assert stdin_bytes == b'abc'


def test_client_status_defaults_to_200(run_application):
    def script(conn):
        read_request(conn)
        reply(conn, b'Content-Type: text/plain\n\nbody')

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        response = client.request(None)

    assert response.status == 200
    assert response.headers == [('Content-Type', 'text/plain')]
    assert response.body == b'body'


def test_client_filter_sends_data(run_application):
    received = []

    def script(conn):
        received.extend(read_request(conn, stream_type=wire.DATA))
        reply(conn, b'\r\n')

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        client.request({'A': 'b'}, role=wire.FILTER, data=b'file')

    data_bytes = b''.join(record.content for record in received
                          if record.type == wire.DATA)
    assert data_bytes == b'file'


def test_client_keeps_records_after_match(run_application):
    def script(conn):
        read_request(conn)
        conn.sendall(wire.stdout(1, b'\r\n') + wire.end_request(1)
                     + wire.stdout(2, b'late'))

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        client.request(None)
        later = client.recv_records(timeout=5.0)

    assert later == [wire.Rec(wire.STDOUT, 2, b'late'),
                     wire.Rec(wire.STDOUT, 2, b'')]
    assert client.eof


def test_client_peer_closed_before_end(run_application):
    def script(conn):
        read_request(conn)
        conn.sendall(wire.record(wire.STDOUT, 1, b'partial'))

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        with pytest.raises(wire.PeerClosed) as info:
            client.request(None)

    assert info.value.records == [wire.Rec(wire.STDOUT, 1, b'partial')]


def test_client_receive_timeout(run_application):
    finished = threading.Event()

    def script(conn):
        read_request(conn)
        finished.wait(5.0)

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        with pytest.raises(wire.ReceiveTimeout):
            client.request(None, timeout=0.2)
        assert not client.closed_by_peer(0.1)
        finished.set()
        assert client.closed_by_peer(5.0)


def test_client_get_values(run_application):
    queried = []

    def script(conn):
        data = conn.recv(65536)
        queried.extend(wire.parse_pairs(wire.parse_records(data)[0][0].content))
        conn.sendall(wire.get_values_result([('FCGI_MAX_CONNS', '10'),
                                             ('FCGI_MPXS_CONNS', '0')]))

    application = run_application(script)
    with wire.Client(application.address, timeout=5.0) as client:
        values = client.get_values([wire.MAX_CONNS, wire.MPXS_CONNS])

    assert values == {'FCGI_MAX_CONNS': '10', 'FCGI_MPXS_CONNS': '0'}
    assert queried == [(b'FCGI_MAX_CONNS', b''), (b'FCGI_MPXS_CONNS', b'')]


def test_client_reset_sends_rst(run_application):
    outcome = []

    def script(conn):
        try:
            # Buffered bytes come first, then the RST fails recv.  An orderly
            # close would make recv return b'' instead.
            for _ in range(50):
                if not conn.recv(65536):
                    outcome.append('closed')
                    return
        except socket.error as error:
            outcome.append(error.errno)

    application = run_application(script)
    client = wire.Client(application.address, timeout=5.0)
    client.send(wire.begin(1))
    client.reset()
    application.thread.join(5.0)

    assert outcome == [errno.ECONNRESET]


@pytest.mark.parametrize('address', [
    ('10.0.0.1', 9000), ('192.0.2.1', 9000), ('example.invalid', 9000),
    ('2001:db8::1', 9000, 0, 0), ('0.0.0.0', 9000),
])
def test_client_rejects_non_loopback(address):
    with pytest.raises(ValueError):
        wire.Client(address)


def test_cgi_params_nginx_variables():
    environ = wire.cgi_params(
        'POST', '/post/1', query='a=1', script_name='/app',
        headers=[('Content-Type', 'text/plain'), ('X-Forwarded-For', 'h')],
        body=b'12345')

    assert environ['REQUEST_METHOD'] == 'POST'
    assert environ['SCRIPT_NAME'] == '/app'
    assert environ['PATH_INFO'] == '/post/1'
    assert environ['REQUEST_URI'] == '/app/post/1?a=1'
    assert environ['QUERY_STRING'] == 'a=1'
    assert environ['CONTENT_LENGTH'] == '5'
    assert environ['CONTENT_TYPE'] == 'text/plain'
    assert environ['HTTP_X_FORWARDED_FOR'] == 'h'
    assert environ['HTTP_HOST'] == 'localhost'
    assert environ['SERVER_PROTOCOL'] == 'HTTP/1.1'
    assert environ['SERVER_PORT'] == '80'
    assert environ['REMOTE_ADDR'] == '127.0.0.1'


def test_cgi_params_get_and_overrides():
    environ = wire.cgi_params(
        headers={'Content-Length': '100', 'Host': 'example.test'},
        extra={'PATH_INFO': None, 'REQUEST_URI': '/blog/post/12345'})

    assert environ['CONTENT_LENGTH'] == '100'
    assert environ['HTTP_HOST'] == 'example.test'
    assert 'PATH_INFO' not in environ
    assert environ['REQUEST_URI'] == '/blog/post/12345'
    assert wire.cgi_params()['CONTENT_LENGTH'] == ''
    assert wire.cgi_params()['CONTENT_TYPE'] == ''


def test_wire_record_padding_and_limits():
    assert len(wire.record(wire.STDIN, 1, b'abc')) == 16
    assert len(wire.record(wire.STDIN, 1, b'abc', padding=0)) == 11
    assert len(wire.record(wire.STDIN, 1, b'abc', padding=255)) == 266
    with pytest.raises(ValueError):
        wire.record(wire.STDIN, 1, b'x' * 65536)
    with pytest.raises(ValueError):
        wire.encode_length(2 ** 31)
    with pytest.raises(ValueError):
        wire.parse_records(wire.record(wire.STDIN, 1, version=2))
    with pytest.raises(ValueError):
        wire.parse_pairs(b'\x04\x64NAME')
