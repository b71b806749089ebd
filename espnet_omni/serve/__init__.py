"""The streaming recognition server: a WebSocket protocol over the streaming recognizers
(:mod:`~espnet_omni.serve.server`), one connection's stream (:mod:`~espnet_omni.serve.stream`),
its client (:mod:`~espnet_omni.serve.client`) and the browser page (:mod:`~espnet_omni.serve.page`)."""
