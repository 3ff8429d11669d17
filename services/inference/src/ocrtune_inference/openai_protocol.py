"""The OpenAI wire formats the service speaks (as vLLM's OpenAI server does): chat completions,
models, and vLLM's adapter load/unload bodies. Fields we do not implement are refused by name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OWNER = "ocrtune"


class ImageURL(BaseModel):
    url: str


class ContentPart(BaseModel):
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema the answer must be valid against")
    strict: bool | None = Field(default=None, description="Always enforced: decoding follows the schema")


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: plain text, any JSON object, or JSON valid against a schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_asked(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only then")
        return self

    def schema_to_follow(self) -> dict[str, Any] | None:
        if self.type == "json_object":
            return {"type": "object"}
        return self.json_schema.schema_ if self.json_schema is not None else None


class ChatCompletionRequest(BaseModel):
    model: str = Field(description="An adapter (name or name@version), or the served base model's name")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    # OCR decodes greedily and answers once: these are accepted only at the values that mean so.
    temperature: float | None = Field(default=None, ge=0, le=0, description="0 or absent: OCR decodes greedily")
    n: int | None = Field(default=None, ge=1, le=1, description="1 or absent: one transcription per image")
    stream: bool = False
    stream_options: StreamOptions | None = Field(default=None, description="With stream: include_usage")
    logprobs: bool = Field(default=False, description="Return each output token's log-probability")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=20, description="With logprobs: this many most likely tokens at each position"
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="json_schema / json_object: decoding is constrained to valid JSON (structured outputs)"
    )

    model_config = {
        # A field we do not implement is refused by name, not silently ignored.
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "model": "invoices-zh",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo..."}},
                                {"type": "text", "text": "Free OCR."},
                            ],
                        }
                    ],
                }
            ]
        }
    }


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatTopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = OWNER
    root: str = Field(description="The base model, or the adapter's exact version (name@version)")
    parent: str | None = Field(default=None, description="For an adapter: the base model it runs on")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class LoadLoRAAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1, description="An adapter in the store: name or name@version")
    lora_path: str | None = Field(default=None, description="Refused: adapters are loaded from the store")
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_name: str = Field(min_length=1)
    lora_int_id: int | None = Field(default=None, description="Accepted for vLLM compatibility; the name decides")
