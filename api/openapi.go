package api

import (
	_ "embed"
	"net/http"
)

// openapiJSON is the OpenAPI 3.1 description of every route in routes();
// a test keeps the two in step.
//
//go:embed openapi.json
var openapiJSON []byte

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	s.write(w, response{status: http.StatusOK, contentType: "application/json", body: openapiJSON})
}
