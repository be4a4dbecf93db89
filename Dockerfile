# syntax=docker/dockerfile:1
# Build: compile TypeScript with every dependency installed.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

# Runtime: production dependencies, the compiled code and the protos reflection serves.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY proto ./proto
COPY examples ./examples
USER 10001:10001
EXPOSE 9000 9001
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve", "--policy", "examples/policy.yaml"]
