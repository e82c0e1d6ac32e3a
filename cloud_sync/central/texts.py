"""The texts of the events the central API makes itself, in English and Simplified Chinese.

Gateways render their own events from their message catalogues; the central API makes only
these: a gateway silent and back, and a person's acknowledgement or resolution of such an alert.
Each function returns ``(en, zh-Hans)``.
"""

from __future__ import annotations

from typing import Final

OUTCOMES: Final = {
    "resident_ok": ("the resident is fine", "住户安好"),
    "help_given": ("help was given", "已提供帮助"),
    "false_alarm": ("false alarm", "误报"),
    "device_fault": ("a device fault", "设备故障"),
    "other": ("other", "其他"),
    "auto": ("resolved by itself", "自动处理"),
}


def _minutes(seconds: float) -> int:
    return max(1, int(seconds // 60))


def gateway_silent(gateway_id: str, silent_s: float) -> tuple[str, str]:
    minutes = _minutes(silent_s)
    return (
        f"Gateway {gateway_id} has not reported for {minutes} min",
        f"网关 {gateway_id} 已 {minutes} 分钟未上报",
    )


def gateway_back(gateway_id: str, silent_s: float) -> tuple[str, str]:
    minutes = _minutes(silent_s)
    return (
        f"Gateway {gateway_id} is reporting again after {minutes} min of silence",
        f"网关 {gateway_id} 已恢复上报（中断 {minutes} 分钟）",  # noqa: RUF001 (Chinese punctuation)
    )


def gateway_back_resolved(gateway_id: str) -> tuple[str, str]:
    return (
        f"Resolved automatically: gateway {gateway_id} is reporting again",
        f"已自动处理：网关 {gateway_id} 已恢复上报",  # noqa: RUF001
    )


def acknowledged(by: str) -> tuple[str, str]:
    return f"Acknowledged by {by}", f"{by} 已确认"


def resolved(by: str, outcome: str) -> tuple[str, str]:
    en, zh = OUTCOMES[outcome]
    return f"Resolved by {by}: {en}", f"{by} 已处理：{zh}"  # noqa: RUF001
