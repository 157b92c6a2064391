"""Importing pretrained models from public repositories, through each repository's own client.

A repository import names a repository and a model id in it:

==================  ====================================================  ==================
repository          model id                                              client and cache
==================  ====================================================  ==================
``huggingface``     ``ORG/NAME`` (timm's or transformers' layout)         huggingface_hub
``pytorch-hub``     ``torchvision:resnet18``, ``timm:efficientnet_lite0``  torch.hub, hub cache
``pytorch-hub``     ``OWNER/REPO:ENTRY`` (an admin's opt-in; sandboxed)   torch.hub repo cache
``onnx-model-zoo``  a name (``resnet18-v1-7``) or a path in onnx/models   huggingface_hub
``kaggle``          ``OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``         kagglehub
``tensorflow-hub``  a ``tfhub.dev`` address, mapped to its Kaggle handle  kagglehub
``url``             a URL; the route queues a URL import instead          Kai's downloader
``bundled``         ``efficientnet_lite0``                                an installed package
``architecture``    ``resnet18``, ``timm:NAME``, ``torchvision:NAME``     none: fresh weights
==================  ====================================================  ==================

The API checks what it can without the network
(:func:`check_repository_request`); the import job then fetches the file
(:func:`fetch_repository_model`), which answers from the client's cache
when the network is missing, and hands it to the usual format pipeline with
the repository's facts (architecture, classes, input spec) as options and
its resolved revision as provenance.
"""

from kai.models.repositories._architectures import is_untrained
from kai.models.repositories._base import FetchedModel, Repository
from kai.models.repositories._requests import (
    check_repository_request,
    fetch_repository_model,
    parse_repository,
)

__all__ = [
    "FetchedModel",
    "Repository",
    "check_repository_request",
    "fetch_repository_model",
    "is_untrained",
    "parse_repository",
]
