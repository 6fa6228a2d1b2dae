from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorGroup(_message.Message):
    __slots__ = ("tensors",)
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class CodecStep(_message.Message):
    __slots__ = ("name", "meta_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    meta_json: str
    def __init__(self, name: _Optional[str] = ..., meta_json: _Optional[str] = ...) -> None: ...

class ModelPayload(_message.Message):
    __slots__ = ("tensors", "codecs", "delta", "num_samples", "contributors", "extras")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TensorGroup
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TensorGroup, _Mapping]] = ...) -> None: ...
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    codecs: _containers.RepeatedCompositeFieldContainer[CodecStep]
    delta: bool
    num_samples: int
    contributors: _containers.RepeatedScalarFieldContainer[str]
    extras: _containers.MessageMap[str, TensorGroup]
    def __init__(self, tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., codecs: _Optional[_Iterable[_Union[CodecStep, _Mapping]]] = ..., delta: _Optional[bool] = ..., num_samples: _Optional[int] = ..., contributors: _Optional[_Iterable[str]] = ..., extras: _Optional[_Mapping[str, TensorGroup]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("version", "msg_id", "kind", "sender", "origin", "round", "ttl", "args", "covered", "model", "experiment")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    COVERED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    version: int
    msg_id: str
    kind: str
    sender: str
    origin: str
    round: int
    ttl: int
    args: _containers.RepeatedScalarFieldContainer[str]
    covered: _containers.RepeatedScalarFieldContainer[str]
    model: ModelPayload
    experiment: str
    def __init__(self, version: _Optional[int] = ..., msg_id: _Optional[str] = ..., kind: _Optional[str] = ..., sender: _Optional[str] = ..., origin: _Optional[str] = ..., round: _Optional[int] = ..., ttl: _Optional[int] = ..., args: _Optional[_Iterable[str]] = ..., covered: _Optional[_Iterable[str]] = ..., model: _Optional[_Union[ModelPayload, _Mapping]] = ..., experiment: _Optional[str] = ...) -> None: ...
