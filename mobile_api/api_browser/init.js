// Starts Swagger UI on the gateway's own document. A file, not an inline script: the page's
// Content-Security-Policy allows scripts from this gateway only.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
  });
});
