"""Secure connections' settings: Kafka security (``RISKWATCH_KAFKA_*``: what each protocol hands the
aiokafka clients and the Faust app) and https for the API and the ingest gateway
(``RISKWATCH_HTTPS_*``); settings that cannot work refused at load with the variable named. End to end (a
broker that requires mutual TLS, a Redis with a password, https): tests/integration/test_kafka_tls.py."""

from __future__ import annotations

import asyncio
import json
import ssl

import faust
import pytest
from pydantic import ValidationError

from riskwatch import cli
from riskwatch.kafka_security import client_options, faust_credentials
from riskwatch.settings import Settings

trustme = pytest.importorskip("trustme", reason="trustme (a dev dependency) makes the test CA")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(d / "api.pem"))
    client = ca.issue_cert("riskwatch-worker")
    client.cert_chain_pems[0].write_to_path(str(d / "client.crt"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    (d / "notes.txt").write_text("not a certificate\n")
    return d


def test_plaintext_is_the_default_and_adds_nothing():
    assert client_options(Settings(broker="k1:9092,k2:9092")) == {"bootstrap_servers": "k1:9092,k2:9092"}
    assert faust_credentials(Settings()) is None


def test_ssl_verifies_the_broker_against_the_ca_and_presents_the_client_certificate(pki):
    s = Settings(broker="k1:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=pki / "ca.pem",
                 kafka_ssl_certfile=pki / "client.crt", kafka_ssl_keyfile=pki / "client.key")
    opts = client_options(s)
    assert opts["security_protocol"] == "SSL" and "sasl_mechanism" not in opts
    ctx = opts["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] and client_options(s)["ssl_context"] is ctx  # built once
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and creds.context is ctx
    relaxed = Settings(broker="k1:9093", kafka_security_protocol="SSL", kafka_ssl_cafile=pki / "ca.pem",
                       kafka_ssl_check_hostname=False)
    assert not client_options(relaxed)["ssl_context"].check_hostname


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_passes_mechanism_and_credentials_and_tls_only_with_ssl(protocol):
    s = Settings(broker="k1:9094", kafka_security_protocol=protocol, kafka_sasl_mechanism="SCRAM-SHA-256",
                 kafka_sasl_username="riskwatch", kafka_sasl_password="s3cret")
    opts = client_options(s)
    assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"],
            opts["sasl_plain_password"]) == (protocol, "SCRAM-SHA-256", "riskwatch", "s3cret")
    assert ("ssl_context" in opts) == (protocol == "SASL_SSL")
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username, creds.password) == \
        (protocol, "SCRAM-SHA-256", "riskwatch", "s3cret")
    assert "s3cret" not in str(s.masked()) and "s3cret" not in repr(s)


def test_the_mqtt_bridges_tls_context_verifies_the_broker(pki):
    assert Settings().mqtt_tls_context() is None
    ctx = Settings(mqtt_tls=True, mqtt_ca_file=pki / "ca.pem", mqtt_cert_file=pki / "client.crt",
                   mqtt_key_file=pki / "client.key").mqtt_tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname and ctx.get_ca_certs()
    assert Settings(mqtt_tls=True).mqtt_tls_context().get_ca_certs() != ctx.get_ca_certs()  # the system's CAs


def test_https_for_the_api_and_the_gateway_hands_uvicorn_the_files(pki):
    assert Settings().uvicorn_tls() == {}
    assert Settings(https_certfile=pki / "api.pem").uvicorn_tls() == {"ssl_certfile": str(pki / "api.pem")}
    s = Settings(https_certfile=pki / "client.crt", https_keyfile=pki / "client.key")
    assert s.uvicorn_tls() == {"ssl_certfile": str(pki / "client.crt"), "ssl_keyfile": str(pki / "client.key")}


@pytest.mark.parametrize("kwargs, says", [
    ({"kafka_security_protocol": "SASL_SSL"}, "needs RISKWATCH_KAFKA_SASL_USERNAME and RISKWATCH_KAFKA_SASL_PASSWORD"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "rw"}, "RISKWATCH_KAFKA_SASL_PASSWORD"),
    ({"kafka_ssl_cafile": "ca.pem"}, "RISKWATCH_KAFKA_SSL_CAFILE is set but RISKWATCH_KAFKA_SECURITY_PROTOCOL is "
                                     "PLAINTEXT"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "missing.pem"}, "RISKWATCH_KAFKA_SSL_CAFILE: no such file"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "client.key"},
     "RISKWATCH_KAFKA_SSL_KEYFILE is set without RISKWATCH_KAFKA_SSL_CERTFILE"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "notes.txt"}, "RISKWATCH_KAFKA_SSL_CAFILE cannot be used"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "client.crt"},
     "RISKWATCH_KAFKA_SSL_CERTFILE cannot be used"),  # a certificate without its key
    ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ({"mqtt_password": "pw"}, "RISKWATCH_MQTT_PASSWORD is set without RISKWATCH_MQTT_USERNAME"),
    ({"mqtt_ca_file": "ca.pem"}, "RISKWATCH_MQTT_CA_FILE is set but RISKWATCH_MQTT_TLS is off"),
    ({"mqtt_tls": True, "mqtt_ca_file": "missing.pem"}, "RISKWATCH_MQTT_CA_FILE: no such file"),
    ({"mqtt_tls": True, "mqtt_cert_file": "ca.pem"}, "RISKWATCH_MQTT_CERT_FILE cannot be used"),  # no key
    ({"https_certfile": "missing.pem"}, "RISKWATCH_HTTPS_CERTFILE: no such file"),
    ({"https_keyfile": "client.key"}, "RISKWATCH_HTTPS_KEYFILE is set without RISKWATCH_HTTPS_CERTFILE"),
    ({"https_certfile": "client.crt"}, "RISKWATCH_HTTPS_CERTFILE cannot be used"),  # no key
    ({"https_certfile": "notes.txt"}, "RISKWATCH_HTTPS_CERTFILE cannot be used"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI", "kafka_sasl_username": "rw",
      "kafka_sasl_password": "pw"}, "kafka_sasl_mechanism"),
])
def test_settings_that_cannot_work_are_refused_at_load_naming_the_variable(pki, kwargs, says):
    kwargs = {k: pki / v if k.endswith("file") else v for k, v in kwargs.items()}
    with pytest.raises(ValidationError) as err:
        Settings(**kwargs)
    assert says in str(err.value)


def test_the_cli_says_which_variable_is_wrong_and_exits_2_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("RISKWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("riskwatch: invalid settings:") and "RISKWATCH_KAFKA_SASL_USERNAME" in err
    assert "Traceback" not in err
    monkeypatch.delenv("RISKWATCH_KAFKA_SECURITY_PROTOCOL")
    monkeypatch.setenv("RISKWATCH_PARTITIONS", "0")
    assert cli.main(["create-topics"]) == 2
    assert "RISKWATCH_PARTITIONS: Input should be greater than or equal to 1 (got '0')" in capsys.readouterr().err


async def test_readiness_tries_each_broker_of_a_bootstrap_list():
    from riskwatch.api.app import _broker_reachable
    from riskwatch.embedded import free_port

    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    up = server.sockets[0].getsockname()[1]
    down = free_port()  # nothing listens there
    try:
        assert await _broker_reachable(f"127.0.0.1:{down}, 127.0.0.1:{up}") is True
        assert await _broker_reachable(f"127.0.0.1:{down}") == "unreachable: ConnectionRefusedError"
        assert await _broker_reachable("") == "no broker address"
    finally:
        server.close()
        await server.wait_closed()


def test_settings_come_from_a_secrets_dir_under_the_environment(tmp_path, monkeypatch):
    """Docker and Kubernetes secrets: ``riskwatch_<name>`` files in ``RISKWATCH_SECRETS_DIR``; the environment wins."""
    (tmp_path / "riskwatch_kafka_sasl_password").write_text("from-a-file\n")
    (tmp_path / "riskwatch_redis_url").write_text("redis://:s3cret@redis:6379/0\n")
    monkeypatch.setenv("RISKWATCH_SECRETS_DIR", str(tmp_path))
    s = Settings()
    assert s.kafka_sasl_password.get_secret_value() == "from-a-file" and s.redis_url == "redis://:s3cret@redis:6379/0"
    assert s.masked()["redis_url"] == "redis://:***@redis:6379/0"
    monkeypatch.setenv("RISKWATCH_KAFKA_SASL_PASSWORD", "from-the-environment")
    assert Settings().kafka_sasl_password.get_secret_value() == "from-the-environment"
    monkeypatch.setenv("RISKWATCH_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValidationError) as err:
        Settings()
    assert "no such directory" in cli.settings_errors(err.value) and "RISKWATCH_SECRETS_DIR" in \
        cli.settings_errors(err.value)


def test_an_empty_variable_is_unset(monkeypatch):
    """compose's ``RISKWATCH_KAFKA_SSL_CERTFILE:`` with nothing after it: unset, not the current directory."""
    monkeypatch.setenv("RISKWATCH_KAFKA_SSL_CERTFILE", "")
    monkeypatch.setenv("RISKWATCH_TOPIC_PREFIX", "")
    s = Settings()
    assert s.kafka_ssl_certfile is None and s.topic_prefix == "rw."


def test_check_settings_prints_the_settings_in_force_with_secrets_masked(monkeypatch, capsys):
    monkeypatch.setenv("RISKWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("RISKWATCH_KAFKA_SASL_USERNAME", "riskwatch")
    monkeypatch.setenv("RISKWATCH_KAFKA_SASL_PASSWORD", "s3cret-sasl")
    monkeypatch.setenv("RISKWATCH_REDIS_URL", "redis://:s3cret-redis@10.0.0.5:6379/0")
    monkeypatch.setenv("RISKWATCH_API_TOKENS", "ops:ops:" + "a" * 64)
    assert cli.main(["check-settings"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["kafka_sasl_username"] == "riskwatch" and shown["redis_url"] == "redis://:***@10.0.0.5:6379/0"
    assert shown["api_tokens"] == "***" and "s3cret" not in out
