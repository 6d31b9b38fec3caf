"""The local servers' request rules (insarcloud.httpsafety), shared by `insarcloud view` and `insarcloud review`."""

from __future__ import annotations

from insarcloud.httpsafety import allowed_hosts, hostname, refusal

HOSTS = allowed_hosts("127.0.0.1")
OWN = {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000", "Content-Type": "application/json"}


def test_hostname_drops_port_and_brackets() -> None:
    assert hostname("[::1]:8000") == "::1"
    assert hostname("LocalHost:1") == "localhost"
    assert hostname("[::1") == ""  # a malformed netloc names no host


def test_reads_need_this_host_and_if_any_this_origin() -> None:
    assert refusal("GET", {"Host": "localhost:8000"}, HOSTS) is None
    assert refusal("GET", {"Host": "evil.example:8000"}, HOSTS)[0] == 403  # DNS rebinding
    assert refusal("GET", {"Host": "127.0.0.1:8000", "Origin": "http://evil.example"}, HOSTS)[0] == 403
    assert refusal("GET", {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}, HOSTS) is None


def test_writes_need_origin_and_json_unless_the_server_is_read_only() -> None:
    assert refusal("POST", OWN, HOSTS) is None
    assert refusal("POST", {**OWN, "Content-Type": "text/plain"}, HOSTS)[0] == 415
    no_origin = {"Host": OWN["Host"], "Content-Type": "text/plain"}
    assert refusal("POST", no_origin, HOSTS)[0] == 403
    # a read-only server checks a POST like a read (then answers 405 itself); a foreign Origin is still 403
    assert refusal("POST", no_origin, HOSTS, writes=False) is None
    assert refusal("POST", {**no_origin, "Origin": "http://evil.example"}, HOSTS, writes=False)[0] == 403
