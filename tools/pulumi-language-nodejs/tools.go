//go:build tools

// Package tools pins the Node.js language host so that
// `go build github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs` builds it from
// this module with the versions in go.mod/go.sum.
package tools

import (
	_ "github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs"
)
