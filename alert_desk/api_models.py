"""What the desk's API answers and accepts, named so that ``/api/openapi.json`` documents it."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class AlertView(BaseModel):
    alert_id: str
    message_id: str
    drone_id: str
    observed_at: str = Field(description="when the drone saw it (RFC 3339, UTC)")
    raised_at: str = Field(description="when the stream pipeline raised the alert")
    received_at: str = Field(description="when the desk stored it")
    latitude: float
    longitude: float
    borough: str | None
    image_id: str
    photo_url: str = Field(description="the photo (JPEG), served behind the same sign-in")
    photo_missing: bool = Field(description="the lake's store has no photo for this alert")
    status: str = Field(description="open, acknowledged or resolved")
    acknowledged_by: str | None
    acknowledged_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    resolved_code: int | None
    correction_message_id: str | None


class AlertList(BaseModel):
    alerts: list[AlertView] = Field(description="newest first")
    total: int = Field(description="how many alerts match the filter (the list holds at most `limit`, from `offset`)")
    counts: dict[str, int] = Field(description="alerts per status, whatever the filter")


class AuditEntry(BaseModel):
    id: int
    at: str
    operator: str
    action: str
    alert_id: str | None
    detail: str


class AlertDetail(BaseModel):
    alert: AlertView
    audit: list[AuditEntry]


class Resolution(BaseModel):
    """The DOF violation code the operator sees in the picture."""

    model_config = ConfigDict(extra="forbid")
    violation_code: StrictInt = Field(description="a code of the DOF code table (GET /api/codes)")


class ResolveAnswer(BaseModel):
    alert: AlertView
    correction: dict[str, Any] = Field(description="the v1 message published to the messages topic")
    partition: int
    offset: int


class CodeView(BaseModel):
    code: int
    description: str
    fine_manhattan_96_below: float
    fine_elsewhere: float


class Problem(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "not signed in"},
    404: {"model": Problem, "description": "no such alert"},
    409: {"model": Problem, "description": "the alert's state does not allow this"},
    422: {"model": Problem, "description": "invalid input"},
}
