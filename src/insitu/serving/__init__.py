"""Model serving: registry models behind the Open Inference Protocol v2.

Owns: the endpoint (:class:`EndpointSpec` to say what to serve, :class:`Endpoint` live),
runtimes by model flavour, replicas forked from a warm process under their own memory
limits, adaptive batching, autoscaling with scale to zero, canary/shadow/A-B traffic,
payload logging and metrics, and the HTTP app of ``insitu serve``.

May import: models, store, artifacts, scheduler, executor, errors, _config (and the
frameworks, lazily). Imported by: the server and the CLI, never the reverse.

    from insitu.serving import EndpointSpec, Server
    with Server(EndpointSpec(model="fraud@champion")) as s:
        print(s.url)   # POST {s.url}/v2/models/fraud/infer
"""

from insitu.serving._autoscale import Autoscaling
from insitu.serving._endpoint import Batching, Endpoint, EndpointSpec, Resources
from insitu.serving._payloads import PayloadLogging, read_payloads
from insitu.serving._serve import Server
from insitu.serving._traffic import Traffic

__all__ = ["Autoscaling", "Batching", "Endpoint", "EndpointSpec", "PayloadLogging",
           "Resources", "Server", "Traffic", "read_payloads"]
