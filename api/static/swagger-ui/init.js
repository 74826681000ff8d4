// Riverbed's Swagger UI: the OpenAPI document of the server that served this page.
// Kept out of index.html so that a Content-Security-Policy without 'unsafe-inline' works.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).toString(),
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
};
