// yamlcompat.go owns YAML decoding the way Argo CD decodes it: through
// sigs.k8s.io/yaml, which converts YAML to JSON with a YAML 1.1 parser
// (go-yaml v2) and then decodes that JSON with encoding/json.
//
// Upstream read: kubernetes-sigs/yaml v1.6.0 (commit
// 048d724aca2d37ddb5b03c90b5b4550a3a48766d, the version pinned in argo-cd
// v3.5.1's go.mod), yaml.go: Unmarshal -> unmarshal -> yamlToJSONTarget ->
// convertToJSONableObject, then jsonUnmarshal. Consequences that this file
// reproduces:
//   - every number decoded into map[string]any becomes float64 (so a
//     config.json value 123 renders as "123", 1000000 as "1e+06");
//   - YAML 1.1 scalars: unquoted yes/no/on/off are booleans;
//   - non-string map keys (ints, floats, bools) become strings;
//   - error texts: "error converting YAML to JSON: ..." and
//     "error unmarshaling JSON: while decoding JSON: ...".
//
// go-yaml v2 here is Debian's gopkg.in/yaml.v2 2.4.0; upstream uses the
// go.yaml.in/yaml/v2 fork of the same code.

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	yaml2 "gopkg.in/yaml.v2"
)

// yamlToJSON mirrors sigs.k8s.io/yaml.YAMLToJSON (non-strict: duplicate keys
// are tolerated, as go-yaml v2's Unmarshal tolerates them).
func yamlToJSON(y []byte) ([]byte, error) {
	var yamlObj interface{}
	if err := yaml2.Unmarshal(y, &yamlObj); err != nil {
		return nil, err
	}
	jsonObj, err := convertToJSONableObject(yamlObj)
	if err != nil {
		return nil, err
	}
	return json.Marshal(jsonObj)
}

// sigsUnmarshal mirrors sigs.k8s.io/yaml.Unmarshal(y, obj) for the untyped
// targets Argo CD uses here (*map[string]any, *[]map[string]any, *[]any).
func sigsUnmarshal(y []byte, obj interface{}) error {
	j, err := yamlToJSON(y)
	if err != nil {
		return fmt.Errorf("error converting YAML to JSON: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(j))
	if err := d.Decode(&obj); err != nil {
		return fmt.Errorf("error unmarshaling JSON: %w", fmt.Errorf("while decoding JSON: %w", err))
	}
	return nil
}

// convertToJSONableObject mirrors the untyped path (jsonTarget == nil or an
// interface element type) of sigs.k8s.io/yaml's convertToJSONableObject.
func convertToJSONableObject(yamlObj interface{}) (interface{}, error) {
	switch typed := yamlObj.(type) {
	case map[interface{}]interface{}:
		strMap := make(map[string]interface{}, len(typed))
		for k, v := range typed {
			var keyString string
			switch typedKey := k.(type) {
			case string:
				keyString = typedKey
			case int:
				keyString = strconv.Itoa(typedKey)
			case int64:
				keyString = strconv.FormatInt(typedKey, 10)
			case float64:
				s := strconv.FormatFloat(typedKey, 'g', -1, 32)
				switch s {
				case "+Inf":
					s = ".inf"
				case "-Inf":
					s = "-.inf"
				case "NaN":
					s = ".nan"
				}
				keyString = s
			case bool:
				if typedKey {
					keyString = "true"
				} else {
					keyString = "false"
				}
			default:
				return nil, fmt.Errorf("unsupported map key of type: %s, key: %+#v, value: %+#v",
					reflect.TypeOf(k), k, v)
			}
			converted, err := convertToJSONableObject(v)
			if err != nil {
				return nil, err
			}
			strMap[keyString] = converted
		}
		return strMap, nil
	case []interface{}:
		arr := make([]interface{}, len(typed))
		for i, v := range typed {
			converted, err := convertToJSONableObject(v)
			if err != nil {
				return nil, err
			}
			arr[i] = converted
		}
		return arr, nil
	default:
		return yamlObj, nil
	}
}

// jsonToYAML mirrors sigs.k8s.io/yaml.JSONToYAML.
func jsonToYAML(j []byte) ([]byte, error) {
	var jsonObj interface{}
	if err := yaml2.Unmarshal(j, &jsonObj); err != nil {
		return nil, err
	}
	return yaml2.Marshal(jsonObj)
}

// isJSONStr and convertYAMLToJSON mirror applicationset/utils/utils.go
// IsJSONStr / ConvertYAMLToJSON (used for templatePatch).
func isJSONStr(str string) bool {
	str = strings.TrimSpace(str)
	return str != "" && str[0] == '{'
}

func convertYAMLToJSON(str string) (string, error) {
	if !isJSONStr(str) {
		j, err := yamlToJSON([]byte(str))
		if err != nil {
			return str, err
		}
		return string(j), nil
	}
	return str, nil
}

// decodeYAMLDocuments splits a multi-document YAML stream and decodes each
// document like sigs.k8s.io/yaml would (kubectl apply uses the same
// conversion before the object reaches the API server). Empty documents are
// skipped.
func decodeYAMLDocuments(data []byte) ([]map[string]any, error) {
	dec := yaml2.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for i := 0; ; i++ {
		var raw interface{}
		err := dec.Decode(&raw)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if raw == nil {
			continue
		}
		conv, err := convertToJSONableObject(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		j, err := json.Marshal(conv)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var obj map[string]any
		if err := json.Unmarshal(j, &obj); err != nil {
			return nil, fmt.Errorf("document %d is not a mapping: %w", i+1, err)
		}
		docs = append(docs, obj)
	}
	return docs, nil
}
