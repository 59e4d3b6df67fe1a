"""The Python Event Hubs client (PyPI `azure-eventhub`, pinned in .ci/run) against the test hub.

Driven by tests/testhub/tests/python_client.rs; prints JSON on stdout.

    eventhub_client.py CONNECTION_STRING HUB properties
    eventhub_client.py CONNECTION_STRING HUB send (--partition P | --key K) BODY...
    eventhub_client.py CONNECTION_STRING HUB receive --partition P --start START --count N

START is `earliest`, `latest`, `sequence:N`, `offset:O` or `enqueued:MS` (milliseconds
since the epoch); positions are exclusive, as the client's default.

Two adjustments to the client, both for this loopback test only (what Azure's service
sends never needs them):
- pyamqp 5.15 indexes every field of a performative as if all were on the wire. AMQP 1.0
  lets a peer leave out trailing fields that are null or at their default (Part 2,
  section 2.7), and fe2o3, the test hub's AMQP stack, does; Azure's service sends them
  all. `decode_frame` below fills the omitted fields with the spec's defaults.
- pyamqp sets each TCP option back to the value it reads; on loopback it can read a
  TCP_MAXSEG of 32768, which Linux refuses to set (EINVAL, at random: the options are a
  set). It is left alone here.
"""

import argparse
import datetime
import json
import sys

import azure.eventhub._pyamqp._decode as _decode
import azure.eventhub._pyamqp._platform as _platform
import azure.eventhub._pyamqp._transport as _transport
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

_platform.KNOWN_TCP_OPTS.discard("TCP_MAXSEG")

_U32_MAX = 4294967295
# Performative code: (number of fields, {index: default}), from AMQP 1.0 Part 2, 2.7.
_PERFORMATIVES = {
    0x10: (10, {2: _U32_MAX, 3: 65535}),  # open: max-frame-size, channel-max
    0x11: (8, {4: _U32_MAX}),  # begin: handle-max
    0x12: (14, {3: 2, 4: 0, 8: False}),  # attach: snd-settle-mode, rcv-settle-mode, incomplete-unsettled
    0x13: (11, {8: False, 9: False}),  # flow: drain, echo
    0x14: (11, {5: False, 8: False, 9: False, 10: False}),  # transfer: more, resume, aborted, batchable
    0x15: (6, {3: False, 5: False}),  # disposition: settled, batchable
    0x16: (3, {1: False}),  # detach: closed
    0x17: (1, {}),  # end
    0x18: (1, {}),  # close
}
_decode_frame = _decode.decode_frame


def decode_frame(data):
    frame_type, fields = _decode_frame(data)
    spec = _PERFORMATIVES.get(frame_type)
    if spec is None:
        return frame_type, fields
    count, defaults = spec
    payload = [fields.pop()] if frame_type == 0x14 else []  # a transfer's payload comes last
    fields += [None] * (count - len(fields))
    for index, default in defaults.items():
        if fields[index] is None:
            fields[index] = default
    return frame_type, fields + payload


_decode.decode_frame = decode_frame
_transport.decode_frame = decode_frame


def jsonable(value):
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {jsonable(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def properties(args):
    with EventHubProducerClient.from_connection_string(args.connection_string, eventhub_name=args.hub) as producer:
        hub = producer.get_eventhub_properties()
        partitions = [producer.get_partition_properties(p) for p in hub["partition_ids"]]
    print(json.dumps(jsonable({"hub": hub, "partitions": partitions})))


def send(args):
    with EventHubProducerClient.from_connection_string(args.connection_string, eventhub_name=args.hub) as producer:
        batch = producer.create_batch(partition_id=args.partition, partition_key=args.key)
        for body in args.bodies:
            batch.add(EventData(body))
        producer.send_batch(batch)
    print(json.dumps({"sent": len(args.bodies)}))


def start_position(start):
    if start == "earliest":
        return "-1"
    if start == "latest":
        return "@latest"
    kind, _, value = start.partition(":")
    if kind == "sequence":
        return int(value)
    if kind == "offset":
        return value
    if kind == "enqueued":
        return datetime.datetime.fromtimestamp(int(value) / 1000, tz=datetime.timezone.utc)
    raise SystemExit(f"unknown start position {start!r}")


def receive(args):
    consumer = EventHubConsumerClient.from_connection_string(
        args.connection_string, consumer_group="$Default", eventhub_name=args.hub
    )
    got = []

    def on_event(context, event):
        if event is not None:
            got.append(
                {
                    "partition": context.partition_id,
                    "sequence_number": event.sequence_number,
                    "offset": event.offset,
                    "enqueued_ms": jsonable(event.enqueued_time),
                    "partition_key": jsonable(event.partition_key),
                    "body": event.body_as_str(),
                }
            )
        # None: nothing came for max_wait_time.
        if event is None or len(got) >= args.count:
            consumer.close()

    with consumer:
        consumer.receive(
            on_event=on_event,
            partition_id=args.partition,
            starting_position=start_position(args.start),
            max_wait_time=args.wait,
        )
    print(json.dumps(got))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("connection_string")
    parser.add_argument("hub")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("properties").set_defaults(run=properties)
    sending = commands.add_parser("send")
    sending.add_argument("--partition")
    sending.add_argument("--key")
    sending.add_argument("bodies", nargs="+")
    sending.set_defaults(run=send)
    receiving = commands.add_parser("receive")
    receiving.add_argument("--partition", required=True)
    receiving.add_argument("--start", required=True)
    receiving.add_argument("--count", type=int, required=True)
    receiving.add_argument("--wait", type=float, default=3.0, help="seconds without an event before it stops")
    receiving.set_defaults(run=receive)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
