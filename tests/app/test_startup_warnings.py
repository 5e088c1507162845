"""What a real ``leadgate serve`` process says at start about its environment."""

from __future__ import annotations

from processes import GatewayLauncher


async def test_a_misspelt_variable_is_named_in_a_warning_without_its_value(
    gateways: GatewayLauncher,
) -> None:
    # LEADGATE_REDIS_URI instead of LEADGATE_REDIS_URL: the gateway would quietly run on its
    # embedded store (per-process memory); ops must be told at start.
    secret = "redis://:s3cret-password@10.0.0.7:6379/0"
    misspelt = {"LEADGATE_REDIS_URI": secret, "LEADGATE_LOGLEVEL": "debug"}
    gateway = await gateways.astart(env=misspelt)
    gateway.kill()

    records = gateway.log_records()
    warnings = [r for r in records if str(r.get("msg")).startswith("unknown LEADGATE_")]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["variables"] == ["LEADGATE_LOGLEVEL", "LEADGATE_REDIS_URI"]
    assert "s3cret" not in gateway.log_text()


async def test_known_variables_alone_give_no_such_warning(gateways: GatewayLauncher) -> None:
    gateway = await gateways.astart(env={"LEADGATE_LOG_LEVEL": "info"})
    gateway.kill()

    assert not any(m.startswith("unknown LEADGATE_") for m in gateway.messages())


async def test_the_configs_own_secret_variables_are_not_called_misspelt(
    gateways: GatewayLauncher,
) -> None:
    """The example config names its CRM secrets ``LEADGATE_WEBHOOK_SECRET_ACME`` …, the docs'
    own style: set, they are known; a real typo beside them is still named."""
    env = {
        "LEADGATE_WEBHOOK_SECRET_ACME": "whsec_" + "A" * 44,
        "LEADGATE_NOVABANK_TOKEN": "t" * 40,
        "LEADGATE_SOLARIS_API_KEY": "k" * 40,
        "LEADGATE_REDIS_URI": "redis://127.0.0.1:1/0",
    }
    gateway = await gateways.astart(env=env)
    gateway.kill()

    records = gateway.log_records()
    warnings = [r for r in records if str(r.get("msg")).startswith("unknown LEADGATE_")]
    assert [w["variables"] for w in warnings] == [["LEADGATE_REDIS_URI"]]
