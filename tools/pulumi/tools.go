//go:build tools

// Package tools pins the Pulumi CLI so that `go build github.com/pulumi/pulumi/pkg/v3/cmd/pulumi`
// builds it from this module with the versions in go.mod/go.sum.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
