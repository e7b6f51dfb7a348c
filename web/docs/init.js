// The /docs page: Swagger UI over the document this control plane serves. "Authorize" takes the
// admin token (data dir's admin.token); it is kept for this tab only.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  persistAuthorization: false,
});
