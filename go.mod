module github.com/gomegatron/gomegatron

go 1.26
