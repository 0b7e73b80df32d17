"""The attachment record's format (records.RECORD_FORMAT): written in every record, and read whatever the format:
a record without the key (format 1, route 0.1.0) and one of a later format, whose keys this release does not
know, are both read by the keys it knows, so that an upgrade and a rollback can DEL and GC every pod."""
import json

from cniroute.records import RECORD_FORMAT, Attachment, PodRoute

PLAIN = Attachment("c1", "eth0", "net", "eno1", "eno1.host", ["192.168.1.2/32"],
                   [PodRoute("10.96.0.0/12", "192.168.0.5")])


def test_every_record_says_its_format():
    assert PLAIN.to_json()["format"] == RECORD_FORMAT == 2


def test_a_record_of_route_0_1_0_without_the_key_is_read_as_it_was_written():
    document = PLAIN.to_json()
    del document["format"]
    assert Attachment.from_json(document) == PLAIN


def test_a_record_of_a_later_format_is_read_by_the_keys_this_release_knows():
    document = {**PLAIN.to_json(), "format": RECORD_FORMAT + 1, "aKeyOfLater": {"any": ["shape"]}}
    assert Attachment.from_json(json.loads(json.dumps(document))) == Attachment.from_json(PLAIN.to_json())


def test_a_format_that_is_not_a_positive_integer_is_not_one_a_release_wrote():
    for wrong in (0, "2", None, 1.5):
        assert Attachment.from_json({**PLAIN.to_json(), "format": wrong}) is None, wrong
