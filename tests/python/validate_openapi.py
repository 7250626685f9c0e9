"""Validates an OpenAPI document with openapi-spec-validator (an independent validator).

Usage: python validate_openapi.py URL
"""

import json
import sys
import urllib.request

from openapi_spec_validator import validate
from openapi_spec_validator import OpenAPIV31SpecValidator

with urllib.request.urlopen(sys.argv[1], timeout=30) as resp:
    doc = json.load(resp)
validate(doc, cls=OpenAPIV31SpecValidator)
print(json.dumps({"valid": True, "openapi": doc["openapi"], "paths": len(doc["paths"])}))
